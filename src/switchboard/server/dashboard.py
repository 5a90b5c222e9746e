"""The operator dashboard of contract §4: ``GET /dashboard`` and ``GET /api/v1/latency``.

``/dashboard`` is one static, self-contained page (inline style and script, nothing fetched
from elsewhere: many deployments have no internet). It holds no data; its script polls
``/api/v1/stats``, ``/api/v1/nodes``, ``/api/v1/pools`` and ``/api/v1/latency`` every 2 s and
renders every value with ``textContent`` (node ids come from nodes: never ``innerHTML``).
The strict ``Content-Security-Policy`` allows exactly the inline style and script by hash.

Auth, as contract §4 says: with ``--admin-token`` the page answers 401 without
``Authorization: Bearer <token>`` and 200 with it (``admin_api.authorized``). A browser cannot
send that header when it opens a page, so a GET of ``/dashboard`` that accepts HTML gets its
401 with the same static page as body (:func:`dashboard`); the page
then sends the bearer header on its own ``fetch`` calls, which is where the data is. The token
comes from the URL fragment (``/dashboard#token=…``: a fragment never reaches the server, its
logs or a ``Referer``; the script removes it from the address bar at once) or from a password
field shown after a 401, and is kept in ``sessionStorage`` (this tab only, gone when it
closes). Never in a query string, never in a cookie (no ambient credential, so no CSRF).

Latency: p50/p90/p99 of ``switchboard_dispatch_latency_seconds`` are estimated on the server
from the histogram's cumulative buckets, as Prometheus' ``histogram_quantile`` does (linear
within a bucket), so they are only as fine as the buckets of :mod:`switchboard.metrics`. They
cover this scheduler process only.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from types import MappingProxyType
from typing import Final

import msgspec
from aiohttp import web

from switchboard.metrics import FastHistogram
from switchboard.server.admin_api import admin_only, authorized, unauthorized
from switchboard.server.scheduler import SCHEDULER, Scheduler

PATH: Final = "/dashboard"
routes = web.RouteTableDef()

# --------------------------------------------------------------------------- latency (pure)

Buckets = Sequence[tuple[float, float]]
"""``(upper bound, cumulative count)`` pairs in ascending order, the last bound ``+Inf``."""

QUANTILES: Final = (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99))


def quantile(buckets: Buckets, q: float) -> float | None:
    """The ``q``-quantile estimated from cumulative buckets, ``None`` with no samples.

    As Prometheus' ``histogram_quantile``: find the bucket holding rank ``q × count`` and
    interpolate linearly inside it (the first bucket starts at 0); a rank in the ``+Inf``
    bucket gets the highest finite bound, the most a histogram can say.
    """
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], not {q}")
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            # below < rank <= cumulative: this bucket holds at least one sample.
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower


def latency_summary(buckets: Buckets) -> dict[str, int | float | None]:
    """The body of ``GET /api/v1/latency``: sample count and p50/p90/p99 in ms (µs precision),
    each ``null`` while there are no samples."""
    summary: dict[str, int | float | None] = {"count": int(buckets[-1][1]) if buckets else 0}
    for key, q in QUANTILES:
        seconds = quantile(buckets, q)
        summary[key] = None if seconds is None else round(seconds * 1000, 3)
    return summary


def histogram_buckets(histogram: FastHistogram) -> list[tuple[float, float]]:
    """The cumulative ``_bucket`` samples of an unlabelled histogram, ascending by bound."""
    return histogram.cumulative()


@routes.get("/api/v1/latency")
@admin_only
async def latency(request: web.Request) -> web.Response:
    sched: Scheduler = request.app[SCHEDULER]
    summary = latency_summary(histogram_buckets(sched.metrics.dispatch_latency))
    return web.Response(body=msgspec.json.encode(summary), content_type="application/json")


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
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2rem .6rem; border-bottom: 1px solid #8884; }
.st-ready { color: #2e7d32; }
.st-registering { color: #1565c0; }
.st-degraded { color: #ef6c00; }
.st-draining { color: #8e24aa; }
"""

SCRIPT: Final = """
"use strict";
(() => {
  const KEY = "switchboard.adminToken";
  const EVERY_MS = 2000;
  const PATHS = ["/api/v1/stats", "/api/v1/nodes", "/api/v1/pools", "/api/v1/latency"];
  const $ = (id) => document.getElementById(id);
  let timer = 0;

  class Unauthorized extends Error {}

  // The token may come in the fragment: keep it for this tab, then drop it from the URL.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }

  async function getJson(path) {
    const token = sessionStorage.getItem(KEY);
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const resp = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
    if (resp.status === 401) throw new Unauthorized(path);
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
    return resp.json();
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

  function renderStats(s) {
    const n = s.nodes;
    $("cards").replaceChildren(
      card("nodes", n.total), card("ready", n.ready), card("registering", n.registering),
      card("degraded", n.degraded), card("draining", n.draining),
      card("sessions", s.sessions), card("jobs in flight", s.jobs_in_flight),
      card("dispatched", s.dispatched_total), card("failed", s.failed_total),
      card("reservations held", s.reservations_held ?? "store down"));
  }
  function renderLatency(l) {
    $("latency").replaceChildren(
      card("samples", l.count), card("p50", ms(l.p50_ms)),
      card("p90", ms(l.p90_ms)), card("p99", ms(l.p99_ms)));
  }
  function renderNodes(nodes) {
    $("nodes").replaceChildren(...nodes.map((n) => row([
      n.node_id, el("td", n.status, "st-" + n.status), list(n.pools),
      list(n.language_pairs.map((p) => p.src + "→" + p.tgt)),
      (n.reserved ?? "?") + " / " + n.max_concurrency,
    ])));
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

  async function poll() {
    clearTimeout(timer);
    $("forget").hidden = !sessionStorage.getItem(KEY);
    try {
      const [stats, nodes, pools, latency] = await Promise.all(PATHS.map(getJson));
      renderStats(stats);
      renderNodes(nodes);
      renderPools(pools);
      renderLatency(latency);
      $("login").hidden = true;
      setStatus("updated " + new Date().toLocaleTimeString(), false);
    } catch (err) {
      if (err instanceof Unauthorized) {
        // A wrong token is forgotten; polling waits for the operator to give one.
        sessionStorage.removeItem(KEY);
        $("forget").hidden = true;
        $("login").hidden = false;
        setStatus("admin token required", true);
        return;
      }
      setStatus("cannot reach the scheduler: " + err.message, true);
    }
    timer = setTimeout(poll, EVERY_MS);
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    $("token").value = "";
    poll();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    poll();
  });
  poll();
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
<section><h2>Dispatch latency</h2><div class="cards" id="latency"></div></section>
<section><h2>Nodes</h2><table>
  <thead><tr><th>node</th><th>status</th><th>pools</th><th>pairs</th><th>reserved / max</th>
  </tr></thead><tbody id="nodes"></tbody></table></section>
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
