"""The aiohttp application: routes of contract §1–§4 on one port."""

from __future__ import annotations

from aiohttp import web

from switchboard.server import admin_api, dashboard, node_channel, session_channel
from switchboard.server.scheduler import SCHEDULER, Scheduler


def build_app(sched: Scheduler) -> web.Application:
    # No middleware: the operator routes guard themselves (admin_api.admin_only says why).
    app = web.Application(client_max_size=sched.settings.max_frame_bytes)
    app[SCHEDULER] = sched
    app.router.add_get("/ws/node", node_channel.handle)
    app.router.add_get("/ws/session", session_channel.handle)
    app.router.add_routes(admin_api.routes)
    app.router.add_routes(dashboard.routes)
    return app
