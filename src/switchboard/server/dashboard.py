"""The operator dashboard of contract §4: ``GET /dashboard``, its live stream
``GET /api/v1/live`` and ``GET /api/v1/latency``.

``/dashboard`` is one static, self-contained page (inline style and script, nothing fetched
from elsewhere: many deployments have no internet, and there is no build step). It holds no
data. Its script reads ``/api/v1/live``, a server-sent-events stream (``text/event-stream``)
that sends one frame as it opens and then one a second: stats, nodes (with heartbeat age, CPU,
GPU, memory and load against capacity), pools with their members, latency percentiles since
the start, totals (errors by code, failovers by reason, sessions) and the recent history of
:mod:`switchboard.server.history` (dispatch rate and p50/p99 a second, for the last five
minutes: all of it in the first frame, the newest point in each one after). The stream is read
with ``fetch`` rather than ``EventSource``, which cannot send an ``Authorization`` header. The
page draws the history as two small SVG charts, and its drain and undrain buttons ``POST`` to
``/api/v1/nodes/{node_id}/drain|undrain``. Every value is rendered with ``textContent`` (node
ids come from nodes: never ``innerHTML``). The strict ``Content-Security-Policy`` allows
exactly the inline style and script by hash.

Auth, as contract §4 says: with ``--admin-token`` the page answers 401 without
``Authorization: Bearer <token>`` and 200 with it (``admin_api.authorized``). A browser cannot
send that header when it opens a page, so a GET of ``/dashboard`` that accepts HTML gets its
401 with the same static page as body (:func:`dashboard`); the page then sends the bearer
header on its own ``fetch`` calls, which is where the data is. The token comes from the URL
fragment (``/dashboard#token=…``: a fragment never reaches the server, its logs or a
``Referer``; the script removes it from the address bar at once) or from a password field shown
after a 401, and is kept in ``sessionStorage`` (this tab only, gone when it closes). Never in a
query string, never in a cookie (no ambient credential, so no CSRF on the buttons either).

Latency: p50/p90/p99 of ``switchboard_dispatch_latency_seconds`` are estimated on the server
from the histogram's cumulative buckets (:mod:`switchboard.server.latency`). They cover this
scheduler process only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from types import MappingProxyType
from typing import Final

import msgspec
from aiohttp import web

from switchboard.server.admin_api import (
    admin_only,
    authorized,
    nodes_body,
    pools_json,
    stats_body,
    unauthorized,
)
from switchboard.server.history import DISPATCH, HISTORY, PERIOD, History
from switchboard.server.latency import latency_summary, registry_buckets
from switchboard.server.scheduler import SCHEDULER, Scheduler

PATH: Final = "/dashboard"
LIVE_PATH: Final = "/api/v1/live"
routes = web.RouteTableDef()
_json = msgspec.json.encode


def _latency(sched: Scheduler) -> dict[str, int | float | None]:
    return latency_summary(registry_buckets(sched.metrics.registry, DISPATCH))


@routes.get("/api/v1/latency")
@admin_only
async def latency(request: web.Request) -> web.Response:
    summary = _latency(request.app[SCHEDULER])
    return web.Response(body=_json(summary), content_type="application/json")


# --------------------------------------------------------------------------- the live stream


async def live_frame(sched: Scheduler, history: History, *, first: bool) -> dict[str, object]:
    """One frame of ``/api/v1/live``: the whole history in the first, the newest point after."""
    points = list(history.points) if first else list(history.points)[-1:]
    return {
        "t": round(time.time(), 3),
        "period_s": PERIOD,
        "heartbeat_interval_s": sched.settings.heartbeat_interval,
        "keep": history.points.maxlen,
        "stats": await stats_body(sched),
        "nodes": await nodes_body(sched),
        "pools": pools_json(sched),
        "latency": _latency(sched),
        "totals": history.totals(),
        "points": history.series(points),
        "replace": first,
    }


@routes.get(LIVE_PATH)
@admin_only
async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events, one ``data:`` frame a second, until the client goes away or the
    scheduler shuts down (so a shutdown never waits on an open dashboard)."""
    sched: Scheduler = request.app[SCHEDULER]
    history = request.app[HISTORY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy in front (docs/howto-nginx.md) must not buffer
        }
    )
    await response.prepare(request)
    first = True
    with contextlib.suppress(ConnectionError):
        while not sched.closing:
            frame = await live_frame(sched, history, first=first)
            await response.write(b"data: " + _json(frame) + b"\n\n")
            first = False
            # Bounded, so a stopped sampler cannot hold a stream (and the shutdown) forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5 * PERIOD):
                    await history.next_tick()
    return response


# --------------------------------------------------------------------------- the page

STYLE: Final = """
:root { color-scheme: light dark; font: 14px/1.4 system-ui, sans-serif; }
body { margin: 1rem 2rem; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
[hidden] { display: none !important; }
#status { opacity: .7; }
#status.error { color: #c62828; opacity: 1; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; }
.card { border: 1px solid #8886; border-radius: 6px; padding: .4rem .8rem; min-width: 7rem; }
.card b { display: block; font-size: 1.3rem; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.chart { border: 1px solid #8886; border-radius: 6px; padding: .3rem .5rem; }
.chart svg { display: block; width: 30rem; max-width: 90vw; height: 8rem; }
.chart .axis { stroke: #8886; fill: none; }
.chart text { font-size: 10px; fill: currentColor; opacity: .7; }
.line { fill: none; stroke-width: 3; stroke-linecap: round; stroke-linejoin: round; }
.rate { stroke: #1565c0; }
.p50 { stroke: #2e7d32; }
.p99 { stroke: #c62828; }
.key-rate { color: #1565c0; } .key-p50 { color: #2e7d32; } .key-p99 { color: #c62828; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2rem .6rem; border-bottom: 1px solid #8884; }
td.num { font-variant-numeric: tabular-nums; }
meter { width: 5rem; vertical-align: middle; }
.st-ready { color: #2e7d32; }
.st-registering { color: #1565c0; }
.st-degraded { color: #ef6c00; }
.st-draining { color: #8e24aa; }
.stale { color: #c62828; }
"""

SCRIPT: Final = """
"use strict";
(() => {
  const KEY = "switchboard.adminToken";
  const LIVE = "/api/v1/live";
  const RETRY_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const SVG = $("chart-rate").namespaceURI;  // the page's own SVG namespace
  let points = [];
  let keep = 300;
  let period = 1;
  let retry = 0;
  let stream = null;

  class Unauthorized extends Error {}

  // The token may come in the fragment: keep it for this tab, then drop it from the URL.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function authHeaders() {
    const token = sessionStorage.getItem(KEY);
    return token ? { Authorization: "Bearer " + token } : {};
  }

  // Every value goes in as text: nothing from the server is ever parsed as HTML.
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text === null ? "–" : String(text);
    if (cls) node.className = cls;
    return node;
  }
  function card(label, value) {
    const box = el("div", undefined, "card");
    box.dataset.card = label;
    box.append(el("b", value), el("span", label));
    return box;
  }
  function row(cells) {
    const tr = el("tr");
    for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
    return tr;
  }
  const list = (items) => (items.length ? items.join(", ") : "–");
  const ms = (value) => (value === null ? null : value.toFixed(3) + " ms");
  const pct = (value) => (value === null || value === undefined ? null : value.toFixed(1) + " %");

  function renderStats(s, totals) {
    const n = s.nodes;
    $("cards").replaceChildren(
      card("nodes", n.total), card("ready", n.ready), card("registering", n.registering),
      card("degraded", n.degraded), card("draining", n.draining),
      card("sessions", totals.sessions), card("jobs in flight", s.jobs_in_flight),
      card("dispatched", s.dispatched_total), card("failed", s.failed_total),
      card("reservations held", s.reservations_held ?? "store down"));
  }
  function renderCounts(id, counts, empty) {
    const keys = Object.keys(counts);
    const cards = keys.map((k) => card(k, counts[k]));
    $(id).replaceChildren(...(cards.length ? cards : [card(empty, 0)]));
  }
  function renderLatency(l) {
    $("latency").replaceChildren(
      card("samples", l.count), card("p50", ms(l.p50_ms)),
      card("p90", ms(l.p90_ms)), card("p99", ms(l.p99_ms)));
  }

  // --- charts: the last `keep` seconds, newest on the right
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }
  function pathOf(values, now, top) {
    // A gap (null: no dispatch that second) breaks the line rather than drawing a zero.
    let d = "";
    let pen = false;
    for (const [t, v] of values) {
      if (v === null || v === undefined) { pen = false; continue; }
      const x = 600 - ((now - t) / (keep * period)) * 600;
      const y = 115 - (Math.min(v, top) / top) * 105;
      // A new stretch starts with a dot (a zero-length segment with round caps), so a
      // lone busy second still shows.
      d += pen ? "L" + x.toFixed(1) + " " + y.toFixed(1) + " "
        : "M" + x.toFixed(1) + " " + y.toFixed(1) + " h0.01 ";
      pen = true;
    }
    return d.trim();
  }
  function drawChart(id, series, unit) {
    const svg = $(id);
    const now = points.length ? points[points.length - 1].t : 0;
    let top = 0;
    for (const s of series) for (const p of points) top = Math.max(top, p[s] ?? 0);
    top = top > 0 ? top * 1.1 : 1;
    const label = (y, text) => Object.assign(svgEl("text", { x: 2, y }), { textContent: text });
    const children = [
      svgEl("path", { class: "axis", d: "M0 115 H600 M0 10 H600" }),
      label(9, top.toPrecision(3) + " " + unit),
      label(127, "-" + keep * period + " s"),
    ];
    for (const s of series) {
      const d = pathOf(points.map((p) => [p.t, p[s]]), now, top);
      children.push(svgEl("path", { id: id + "-" + s, class: "line " + s.replace("_ms", ""), d }));
    }
    svg.replaceChildren(...children);
    svg.dataset.points = String(points.filter((p) => p[series[series.length - 1]] !== null).length);
    svg.dataset.newest = String(now);
  }
  function renderHistory(frame) {
    keep = frame.keep || keep;
    period = frame.period_s || period;
    // A frame sent without a new tick (the sampler stopping) repeats the newest point.
    const newest = points.length ? points[points.length - 1].t : -Infinity;
    points = frame.replace ? frame.points
      : points.concat(frame.points.filter((p) => p.t > newest));
    if (points.length > keep) points = points.slice(points.length - keep);
    drawChart("chart-rate", ["rate"], "/s");
    drawChart("chart-latency", ["p50_ms", "p99_ms"], "ms");
  }

  // --- nodes, with their actions
  async function act(nodeId, action, button) {
    button.disabled = true;
    try {
      const path = "/api/v1/nodes/" + encodeURIComponent(nodeId) + "/" + action;
      const resp = await fetch(path, {
        method: "POST", headers: authHeaders(), cache: "no-store", credentials: "omit",
      });
      if (resp.status === 401) throw new Unauthorized(path);
      const body = await resp.json();
      if (!resp.ok) throw new Error(body.error || "HTTP " + resp.status);
      setStatus(nodeId + ": " + body.status, false);
      // Shown at once; the stream's next frame (within a second) brings the rest.
      const tr = document.querySelector("tr[data-node-id='" + CSS.escape(nodeId) + "']");
      if (tr) {
        const cell = tr.querySelector(".status");
        cell.textContent = body.status;
        cell.className = "status st-" + body.status;
        tr.lastChild.replaceWith(actionCell({ node_id: nodeId, status: body.status }));
      }
    } catch (err) {
      if (err instanceof Unauthorized) return askToken();
      setStatus(action + " " + nodeId + " failed: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  }
  function actionCell(n) {
    const action = n.status === "draining" ? "undrain" : "drain";
    const button = el("button", action, "action " + action);
    button.type = "button";
    button.addEventListener("click", () => act(n.node_id, action, button));
    const td = el("td");
    td.append(button);
    return td;
  }
  function loadCell(n) {
    const td = el("td", undefined, "num");
    const meter = el("meter");
    meter.min = 0;
    meter.max = n.max_concurrency;
    meter.value = n.reserved ?? 0;
    td.append(meter, " " + (n.reserved ?? "?") + " / " + n.max_concurrency);
    return td;
  }
  function ageCell(n, interval) {
    const age = n.heartbeat_age_s;
    const td = el("td", age === null ? null : age.toFixed(1) + " s", "num");
    if (age !== null && interval && age > 2 * interval) td.classList.add("stale");
    return td;
  }
  function renderNodes(nodes, interval) {
    $("nodes").replaceChildren(...nodes.map((n) => {
      const tr = row([
        n.node_id, el("td", n.status, "status st-" + n.status), ageCell(n, interval),
        loadCell(n), el("td", pct(n.cpu_percent), "num"), el("td", pct(n.mem_percent), "num"),
        el("td", pct(n.gpu_percent), "num"), el("td", pct(n.gpu_mem_percent), "num"),
        list(n.pools), list(n.language_pairs.map((p) => p.src + "→" + p.tgt)), actionCell(n),
      ]);
      tr.dataset.nodeId = n.node_id;
      return tr;
    }));
  }
  function renderPools(pools) {
    $("pools").replaceChildren(...pools.map((p) => row([
      p.pool_id, p.name, list(p.languages), list(p.required_services), list(p.members),
    ])));
  }
  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }
  function render(frame) {
    renderStats(frame.stats, frame.totals);
    renderCounts("errors", frame.totals.errors, "no errors");
    renderCounts("failovers", frame.totals.failovers, "no failovers");
    renderLatency(frame.latency);
    renderHistory(frame);
    renderNodes(frame.nodes, frame.heartbeat_interval_s);
    renderPools(frame.pools);
    $("login").hidden = true;
    setStatus("live · updated " + new Date().toLocaleTimeString(), false);
  }

  // --- the stream: server-sent events read through fetch, which can send the bearer header
  async function readStream(resp) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\\n\\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\\n").filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6)).join("\\n");
        if (data) render(JSON.parse(data));
      }
    }
  }
  async function connect() {
    clearTimeout(retry);
    if (stream) stream.abort();
    stream = new AbortController();
    $("forget").hidden = !sessionStorage.getItem(KEY);
    try {
      const resp = await fetch(LIVE, {
        headers: authHeaders(), cache: "no-store", credentials: "omit", signal: stream.signal,
      });
      if (resp.status === 401) throw new Unauthorized(LIVE);
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      await readStream(resp);
      setStatus("stream ended; reconnecting", true);
    } catch (err) {
      if (err instanceof Unauthorized) return askToken();
      if (err.name === "AbortError") return;
      setStatus("cannot reach the scheduler: " + err.message, true);
    }
    retry = setTimeout(connect, RETRY_MS);
  }
  function askToken() {
    // A wrong token is forgotten; the stream waits for the operator to give one.
    sessionStorage.removeItem(KEY);
    $("forget").hidden = true;
    $("login").hidden = false;
    setStatus("admin token required", true);
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    $("token").value = "";
    connect();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    connect();
  });
  connect();
})();
"""

BODY: Final = """
<h1>Switchboard</h1>
<p id="status">loading…</p>
<form id="login" hidden>
  <label>Admin token <input id="token" type="password" autocomplete="off" required></label>
  <button type="submit">Use token</button>
</form>
<section><h2>Overview</h2><div class="cards" id="cards"></div></section>
<section><h2>Dispatch</h2><div class="charts">
  <div class="chart"><span class="key-rate">dispatches per second</span>
    <svg id="chart-rate" viewBox="0 -2 600 132" role="img"
      aria-label="dispatch rate, last minutes"></svg></div>
  <div class="chart"><span class="key-p50">p50</span> · <span class="key-p99">p99</span>
    dispatch latency, each second
    <svg id="chart-latency" viewBox="0 -2 600 132" role="img"
      aria-label="dispatch latency p50 and p99, last minutes"></svg></div>
</div>
<h2>Latency since start</h2><div class="cards" id="latency"></div>
<h2>Errors by code</h2><div class="cards" id="errors"></div>
<h2>Failovers by reason</h2><div class="cards" id="failovers"></div></section>
<section><h2>Nodes</h2><table>
  <thead><tr><th>node</th><th>status</th><th>heartbeat</th><th>load / capacity</th>
  <th>CPU</th><th>memory</th><th>GPU</th><th>GPU memory</th><th>pools</th><th>pairs</th>
  <th></th></tr></thead><tbody id="nodes"></tbody></table></section>
<section><h2>Pools</h2><table>
  <thead><tr><th>id</th><th>name</th><th>languages</th><th>required services</th>
  <th>members</th></tr></thead><tbody id="pools"></tbody></table></section>
<p><button id="forget" type="button" hidden>Forget token</button></p>
"""


def csp_source(text: str) -> str:
    """The CSP ``'sha256-…'`` source that allows exactly this inline script or style."""
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode("ascii")
    return f"'sha256-{digest}'"


PAGE: Final = "".join(
    [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "<title>Switchboard</title>\n",
        f"<style>{STYLE}</style>\n</head>\n<body>{BODY}<script>{SCRIPT}</script>\n",
        "</body>\n</html>\n",
    ]
).encode()

# 'none' by default; only the page's own script and style, and fetches to this origin.
CSP: Final = "; ".join(
    [
        "default-src 'none'",
        f"script-src {csp_source(SCRIPT)}",
        f"style-src {csp_source(STYLE)}",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

HEADERS: Final = MappingProxyType(
    {
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
)


def page_response(status: int = 200) -> web.Response:
    return web.Response(
        body=PAGE, status=status, content_type="text/html", charset="utf-8", headers=HEADERS
    )


@routes.get(PATH)
async def dashboard(request: web.Request) -> web.Response:
    """The page; without the bearer token (when one is set) a 401 whose body, for a browser,
    is the same static page, so it can ask for the token and send it on its own requests
    (see the module docstring).  Scripts, which do not ask for HTML, get the JSON 401."""
    if authorized(request):
        return page_response()
    if "text/html" in request.headers.get("Accept", ""):
        return page_response(401)
    return unauthorized()
