"""The aiohttp application: routes of contract §1–§4 on one port."""

from __future__ import annotations

from aiohttp import web

from switchboard.server import admin_api, dashboard, history, node_channel, session_channel
from switchboard.server.limits import AddressCounter
from switchboard.server.scheduler import SCHEDULER, Scheduler


def build_app(sched: Scheduler) -> web.Application:
    # No middleware: the operator routes guard themselves (admin_api.admin_only says why).
    app = web.Application(client_max_size=sched.settings.max_frame_bytes)
    app[SCHEDULER] = sched
    app[admin_api.HTTP_REQUESTS] = AddressCounter(sched.settings.max_http_requests_per_address)
    app.router.add_get("/ws/node", node_channel.handle)
    app.router.add_get("/ws/session", session_channel.handle)
    app.router.add_routes(_http_limited(admin_api.routes))
    app.router.add_routes(_http_limited(dashboard.routes))
    # The dashboard's history: one reading of the metrics a second, for as long as we serve.
    app.cleanup_ctx.append(history.sampling(lambda app: app[SCHEDULER].metrics.registry))
    return app


def _http_limited(routes: web.RouteTableDef) -> list[web.RouteDef]:
    """Every plain HTTP route under --max-http-requests-per-address; the WebSocket routes
    above stay bare, so a session's long request carries nothing of the guard."""
    limited: list[web.RouteDef] = []
    for route in routes:
        if not isinstance(route, web.RouteDef):  # a static route would need its own guard
            raise TypeError(f"unexpected route {route!r}")
        handler = admin_api.http_limited(route.handler)
        limited.append(web.RouteDef(route.method, route.path, handler, route.kwargs))
    return limited
