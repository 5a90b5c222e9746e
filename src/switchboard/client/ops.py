"""``switchboard status | nodes | drain NODE | undrain NODE``: a running scheduler seen and
steered through its operator API (protocol.md §4 and §7), with the request path of
``switchboard pools`` (:func:`switchboard.client.pools.request_json`).

Output is a plain aligned table (the bare install has no table library), or with ``--json``
the API's own JSON (``status`` prints ``GET /api/v1/stats`` with ``latency`` from
``GET /api/v1/latency`` added).

Exit status: 0 done; 1 the server refused (its error is printed: a missing or wrong admin token
is HTTP 401) or could not be reached; 3 no such node (``drain``/``undrain``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from switchboard.client.pools import (
    Echo,
    RequestFailed,
    aligned,
    api_url,
    request_json,
    to_stderr,
)

NO_SUCH_NODE = 3
NODE_COLUMNS: tuple[str, ...] = (
    *("NODE_ID", "STATUS", "HEARTBEAT", "LOAD"),
    *("CPU", "MEM", "GPU", "GPU_MEM", "POOLS", "PAIRS"),
)
NODE_ACTIONS = ("drain", "undrain")


def _dash(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}%"


def format_nodes(nodes: list[dict[str, Any]]) -> str:
    """One line a node: status, heartbeat age, slots reserved of its capacity, the usage it
    reports (``-``: not reported, e.g. no GPU), pools and pairs."""
    header = [
        "NODE_ID",
        "STATUS",
        "HEARTBEAT",
        "LOAD",
        "CPU",
        "MEM",
        "GPU",
        "GPU_MEM",
        "POOLS",
        "PAIRS",
    ]
    rows = []
    for n in nodes:
        age = n.get("heartbeat_age_s")
        rows.append(
            (
                str(n.get("node_id", "")),
                str(n.get("status", "")),
                "-" if age is None else f"{float(age):.1f}s",
                f"{_dash(n.get('reserved'))}/{n.get('max_concurrency', '?')}",
                _percent(n.get("cpu_percent")),
                _percent(n.get("mem_percent")),
                _percent(n.get("gpu_percent")),
                _percent(n.get("gpu_mem_percent")),
                ",".join(str(p) for p in n.get("pools", [])) or "-",
                ",".join(f"{p['src']}>{p['tgt']}" for p in n.get("language_pairs", [])) or "-",
            )
        )
    return aligned(header, rows)


def format_status(stats: dict[str, Any]) -> str:
    """The scheduler at a glance, one fact a line."""
    nodes = stats.get("nodes", {})
    store = stats.get("store", {})
    latency = stats.get("latency", {})
    counts = ", ".join(
        f"{nodes.get(s, 0)} {s}" for s in ("ready", "registering", "degraded", "draining")
    )
    rows = [
        ("nodes", f"{nodes.get('total', 0)} ({counts})"),
        ("sessions", _dash(stats.get("sessions"))),
        ("pools", _dash(stats.get("pools"))),
        ("jobs in flight", _dash(stats.get("jobs_in_flight"))),
        ("reservations held", _dash(stats.get("reservations_held"))),
        ("dispatched", _dash(stats.get("dispatched_total"))),
        ("failed", _dash(stats.get("failed_total"))),
        ("store", f"{store.get('kind', '?')} ({'up' if store.get('up') else 'DOWN'})"),
        (
            "dispatch latency",
            f"p50 {_dash(latency.get('p50_ms'), ' ms')}, p99 {_dash(latency.get('p99_ms'), ' ms')}"
            f" ({latency.get('count', 0)} samples)",
        ),
    ]
    return aligned(("WHAT", "VALUE"), rows)


async def _status(url: str, token: str | None, limit: float) -> dict[str, Any]:
    stats, latency = await asyncio.gather(
        request_json("GET", api_url(url, "/api/v1/stats"), token=token, limit=limit),
        request_json("GET", api_url(url, "/api/v1/latency"), token=token, limit=limit),
    )
    return {**stats, "latency": latency}


def _run(
    call: Callable[[], Coroutine[Any, Any, Any]],
    show: Callable[[Any], str],
    *,
    as_json: bool,
    echo: Echo,
    echo_err: Echo,
) -> int:
    try:
        reply: Any = asyncio.run(call())
    except (RequestFailed, ValueError) as exc:
        echo_err(f"switchboard: error: {exc}")
        return 1
    echo(json.dumps(reply, indent=2) if as_json else show(reply))
    return 0


def run_status(
    *,
    url: str,
    token: str | None,
    as_json: bool = False,
    timeout: float = 10.0,
    echo: Echo = print,
    echo_err: Echo = to_stderr,
) -> int:
    """Print the scheduler's stats and dispatch latency; the exit status."""
    return _run(
        lambda: _status(url, token, timeout),
        format_status,
        as_json=as_json,
        echo=echo,
        echo_err=echo_err,
    )


def run_nodes(
    *,
    url: str,
    token: str | None,
    as_json: bool = False,
    timeout: float = 10.0,
    echo: Echo = print,
    echo_err: Echo = to_stderr,
) -> int:
    """Print the scheduler's nodes; the exit status."""
    return _run(
        lambda: request_json("GET", api_url(url, "/api/v1/nodes"), token=token, limit=timeout),
        format_nodes,
        as_json=as_json,
        echo=echo,
        echo_err=echo_err,
    )


def run_node_action(
    action: str,
    node_id: str,
    *,
    url: str,
    token: str | None,
    as_json: bool = False,
    timeout: float = 10.0,
    echo: Echo = print,
    echo_err: Echo = to_stderr,
) -> int:
    """``drain`` or ``undrain`` one node; print its new status; the exit status (3: no such
    node)."""
    if action not in NODE_ACTIONS:
        raise ValueError(f"unknown node action {action!r}")
    path = f"/api/v1/nodes/{quote(node_id, safe='')}/{action}"
    try:
        target = api_url(url, path)
        reply = asyncio.run(request_json("POST", target, token=token, limit=timeout))
    except RequestFailed as exc:
        if exc.status == 404:
            echo_err(f"switchboard: error: no node {node_id!r} on {url} (it is not connected)")
            return NO_SUCH_NODE
        echo_err(f"switchboard: error: {exc}")
        return 1
    except ValueError as exc:
        echo_err(f"switchboard: error: {exc}")
        return 1
    if as_json:
        echo(json.dumps(reply, indent=2))
    else:
        echo(aligned(("NODE_ID", "STATUS"), [(str(reply["node_id"]), str(reply["status"]))]))
    return 0
