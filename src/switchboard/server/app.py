"""The aiohttp application: routes of contract §1–§4 on one port."""

from __future__ import annotations

from aiohttp import web

from switchboard.server import admin_api, node_channel, session_channel
from switchboard.server.scheduler import SCHEDULER, Scheduler


def build_app(sched: Scheduler) -> web.Application:
    app = web.Application(
        middlewares=[admin_api.admin_auth], client_max_size=sched.settings.max_frame_bytes
    )
    app[SCHEDULER] = sched
    app.router.add_get("/ws/node", node_channel.handle)
    app.router.add_get("/ws/session", session_channel.handle)
    app.router.add_routes(admin_api.routes)
    return app
