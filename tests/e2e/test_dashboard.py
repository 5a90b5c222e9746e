"""The operator dashboard end to end (protocol.md §4 ``GET /dashboard``, ``/api/v1/latency``)."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import DEFAULT_WAIT, ServerProcess, scaled
from tests.e2e.test_operator_api import histogram_count

ADMIN_TOKEN = "admin-s3cret"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
NO_SAMPLES = {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    text: str


async def get(
    server: ServerProcess, path: str, *, token: str | None = None, accept: str = "*/*"
) -> Reply:
    """GET with the headers kept (the harness's ``http`` drops them)."""
    headers = {"Accept": accept} | ({"Authorization": f"Bearer {token}"} if token else {})
    timeout = aiohttp.ClientTimeout(total=scaled(DEFAULT_WAIT))
    async with (
        aiohttp.ClientSession(timeout=timeout) as client,
        client.get(server.url + path, headers=headers) as resp,
    ):
        return Reply(resp.status, resp.headers, await resp.text())


def inline(tag: str, page: str) -> str:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    assert match, f"no inline <{tag}>"
    return match[1]


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def assert_page(reply: Reply) -> None:
    """The dashboard page with its security headers, its CSP allowing exactly its own inline
    script and style, and nothing loaded from elsewhere."""
    h = reply.headers
    assert h["Content-Type"] == "text/html; charset=utf-8"
    assert h["Cache-Control"] == "no-store"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    csp = dict(d.strip().split(" ", 1) for d in h["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    assert csp["script-src"] == sha256_source(inline("script", reply.text))
    assert csp["style-src"] == sha256_source(inline("style", reply.text))
    assert "<!doctype html>" in reply.text
    assert not re.search(r"https?://", reply.text)
    assert "/api/v1/live" in reply.text


@MEMORY_ONLY
async def test_dashboard_page_and_headers(server: ServerProcess) -> None:
    """GET /dashboard is 200: one self-contained HTML page, not cached, not framed, not
    sniffed, whose CSP allows only its own inline script and style and fetches to itself."""
    reply = await get(server, "/dashboard", accept=BROWSER_ACCEPT)
    assert reply.status == 200
    assert_page(reply)


@MEMORY_ONLY
@pytest.mark.server(admin_token=ADMIN_TOKEN)
async def test_dashboard_and_latency_need_the_admin_token(server: ServerProcess) -> None:
    """With --admin-token, /dashboard and /api/v1/latency are 401 without the bearer token or
    with a wrong one, 200 with it; a browser's 401 on /dashboard carries the static page (so it
    can ask for the token), never any data or the token."""
    for path in ("/dashboard", "/api/v1/latency"):
        for token in (None, "not-it"):
            reply = await get(server, path, token=token)
            assert reply.status == 401, (path, token)
            assert reply.headers["Content-Type"].startswith("application/json"), path
        reply = await get(server, path, token=ADMIN_TOKEN)
        assert reply.status == 200, path
    assert_page(await get(server, "/dashboard", token=ADMIN_TOKEN))

    browser = await get(server, "/dashboard", accept=BROWSER_ACCEPT)
    assert browser.status == 401
    assert_page(browser)
    assert browser.text == (await get(server, "/dashboard", token=ADMIN_TOKEN)).text
    assert ADMIN_TOKEN not in browser.text
    latency = await get(server, "/api/v1/latency", accept=BROWSER_ACCEPT)
    assert latency.status == 401 and "<html" not in latency.text


@MEMORY_ONLY
async def test_latency_is_null_then_estimated(server: ServerProcess, peers: Peers) -> None:
    """/api/v1/latency reports count 0 and null percentiles before any dispatch; after some,
    the count matches the /metrics histogram and p50 <= p90 <= p99 are positive ms."""
    assert await server.get_json("/api/v1/latency") == NO_SAMPLES
    await peers.node(server)
    session = await peers.session(server)
    for index in range(5):
        await session.utter(index)
    await session.wait_answers(5)

    latency = await server.get_json("/api/v1/latency")
    _, metrics = await server.http("GET", "/metrics")
    assert latency["count"] == histogram_count(metrics, "switchboard_dispatch_latency_seconds")
    assert latency["count"] == 5
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= 1000
