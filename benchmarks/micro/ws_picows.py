"""Micro-benchmark: picows against aiohttp as the scheduler's WebSocket server (issue 9).

The scheduler's two WebSocket channels (sessions, nodes) run on aiohttp on uvloop; aiohttp's
share of a job's CPU is the largest single item of the hot path (``HOTPATH.md``: 29 µs of
server CPU per echoed frame pair, about 58 µs of a job's four frames).  picows is a Cython
WebSocket library for asyncio with a frame-level callback API (no reader task, no message
object, no awaited send).  This measures what switching would save, before anyone rewrites
``server/`` for it.  Each (server, workload, repeat) runs in a fresh server process and a
fresh client process, repeats outermost; tables give the median of the repeats and (min–max).

Workloads (the frame is the same 1.5 KB utterance text frame as ``hotpath.py``'s):

  echo-rtt     1 connection: send, wait for the echo, repeat.  Round trip p50/p99 and server
               CPU per frame pair (one frame received + one sent).
  echo-tput    64 connections echoing in a loop: messages/s, server CPU per frame pair.
  relay-rtt    1 pair of connections, as a session and a node: the client writes the frame on
               the "session" socket, the server relays it to the paired "node" socket, the
               client's node writes it back as its answer, and the server relays that to the
               session socket — the scheduler's four frames per job, without the scheduling.
               Round trip p50/p99 and server CPU per frame pair (two per round).
  relay-tput   32 pairs relaying in a loop: rounds/s, server CPU per frame pair.

Servers (one process, pinned to CPU 0; both on uvloop, as ``switchboard serve``):

  aiohttp   the project's ``ServerSocket`` (compress off, ``decode_text=False``), ``async for
            msg in ws`` + ``await send_frame(bytes, TEXT)``, ``AppRunner(access_log=None)``:
            exactly ``hotpath.py``'s aiohttp/uvloop server, plus the relay route.
  picows    ``ws_create_server`` with a ``WSListener`` per connection: ``on_ws_frame`` gets
            each frame, ``transport.send(TEXT, payload)`` writes (no await).  Unfragmented
            text frames go straight through; fragments are reassembled (a real server has
            to), pings answered by picows' own auto-pong, close frames answered.

The client is ``hotpath.py``'s raw ``asyncio.Protocol`` on uvloop (pinned to CPU 1): one
pre-built masked frame per message, payloads compared byte for byte.  Server CPU comes from
``/proc/<pid>/task/*/schedstat`` before and after the measured window.

Run:  /tmp/pwvenv/bin/python benchmarks/micro/ws_picows.py [--quick] [--json FILE]  (HOTPATH.md)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The client, the frame and the CPU reading are hotpath.py's, so the figures compare.
from hotpath import (
    MAX_FRAME,
    EchoClient,
    Stats,
    loadavg,
    masked_close_frame,
    masked_text_frame,
    pin,
    server_cpu_ns,
    utterance_frame,
)

SERVERS = ["aiohttp", "picows"]
WORKLOADS = ["echo-rtt", "echo-tput", "relay-rtt", "relay-tput"]
SERVER_CPU, CLIENT_CPU = 0, 1
TPUT_CONNECTIONS, TPUT_PAIRS = 64, 32


# =========================================================================== servers


class Pairs:
    """Relay routing: /s/<k> and /n/<k> are one session and its node; a frame from either
    side goes to the other.  ``send`` is the server's own write of one text frame."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[str, Any]] = {}
        self.dropped = 0

    def add(self, path: str, conn: Any) -> tuple[str, str] | None:
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("s", "n"):
            return None
        self.sides.setdefault(parts[1], {})[parts[0]] = conn
        return parts[1], "n" if parts[0] == "s" else "s"

    def peer(self, key: tuple[str, str]) -> Any:
        return self.sides.get(key[0], {}).get(key[1])


async def serve_aiohttp(ready: Callable[[int], None]) -> None:
    from aiohttp import WSMsgType, web

    from switchboard.server.sockets import ServerSocket

    pairs = Pairs()

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = ServerSocket(max_frame_bytes=MAX_FRAME, close_timeout=5.0)
        await ws.prepare(request)
        async for msg in ws:  # decode_text=False: TEXT data is bytes
            if msg.type == WSMsgType.TEXT:
                await ws.send_frame(msg.data, WSMsgType.TEXT)
        return ws

    async def relay(request: web.Request) -> web.StreamResponse:
        ws = ServerSocket(max_frame_bytes=MAX_FRAME, close_timeout=5.0)
        await ws.prepare(request)
        key = pairs.add(request.path, ws)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and key is not None:
                peer = pairs.peer(key)
                if peer is None or peer.closed:
                    pairs.dropped += 1
                    continue
                # As server/connections.py's send(): one awaited send_frame per frame.
                await peer.send_frame(msg.data, WSMsgType.TEXT)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_get("/s/{k}", relay)
    app.router.add_get("/n/{k}", relay)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)  # as server/runner.py
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ready(runner.addresses[0][1])
    await asyncio.Event().wait()


async def serve_picows(ready: Callable[[int], None]) -> None:  # noqa: C901 (its listener class)
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    pairs = Pairs()
    text, cont, close = WSMsgType.TEXT, WSMsgType.CONTINUATION, WSMsgType.CLOSE

    class Conn(WSListener):  # type: ignore[misc]
        """One connection: echo (path /ws) or one side of a relay pair."""

        def __init__(self, path: str) -> None:
            self.path = path
            self.transport: WSTransport | None = None
            self.key: tuple[str, str] | None = None
            self.parts: list[bytes] | None = None  # a fragmented message being reassembled

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            if self.path != "/ws":
                self.key = pairs.add(self.path, self)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind == text and frame.fin:
                self.message(transport, frame.get_payload_as_bytes())
            elif kind == text or (kind == cont and self.parts is not None):
                self.parts = [*(self.parts or []), frame.get_payload_as_bytes()]
                if frame.fin:
                    whole, self.parts = b"".join(self.parts), None
                    self.message(transport, whole)
            elif kind == close:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

        def message(self, transport: WSTransport, payload: bytes) -> None:
            if self.key is None:
                transport.send(text, payload)
                return
            peer = pairs.peer(self.key)
            if peer is None or peer.transport is None:
                pairs.dropped += 1
                return
            peer.transport.send(text, payload)

    def factory(request: WSUpgradeRequest) -> WSListener:
        path = request.path
        return Conn(path.decode() if isinstance(path, bytes) else str(path))

    server = await ws_create_server(factory, "127.0.0.1", 0, max_frame_size=MAX_FRAME)
    ready(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


def server_worker(name: str) -> None:
    import uvloop

    pinned = pin(SERVER_CPU)

    def ready(port: int) -> None:
        print(json.dumps({"port": port, "pinned": pinned}), flush=True)

    uvloop.run(serve_aiohttp(ready) if name == "aiohttp" else serve_picows(ready))


# =========================================================================== the client


class PathClient(EchoClient):
    """hotpath.py's client on another path (``/s/<k>``: a session of a relay pair)."""

    def __init__(self, path: str, frame: bytes, payload: bytes, stats: Stats) -> None:
        super().__init__(frame, payload, stats)
        self.path = path

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )


class NodeClient(PathClient):
    """The node of a relay pair: answers every frame at once with the same frame."""

    def echoed(self, payload: bytes) -> None:
        if payload != self.payload:
            self.stats.bad += 1
        if self.transport is not None:
            self.transport.write(self.frame)


async def client_run(port: int, server_pid: int, workload: str, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    payload = utterance_frame()  # 1.5 KB of JSON text
    frame = masked_text_frame(payload)
    stats, node_stats = Stats(), Stats()
    relay = workload.startswith("relay")
    many = workload.endswith("tput")
    count = (TPUT_PAIRS if relay else TPUT_CONNECTIONS) if many else 1
    senders: list[EchoClient] = []
    others: list[EchoClient] = []
    for k in range(count):
        if relay:
            _, node = await loop.create_connection(
                lambda k=k: NodeClient(f"/n/{k}", frame, payload, node_stats), "127.0.0.1", port
            )
            await node.upgraded
            others.append(node)
        path = f"/s/{k}" if relay else "/ws"
        _, proto = await loop.create_connection(
            lambda path=path: PathClient(path, frame, payload, stats), "127.0.0.1", port
        )
        await proto.upgraded
        senders.append(proto)
    await asyncio.sleep(0.2)  # every server handler has registered its side of the pair
    for c in senders:
        c.send()
    await asyncio.sleep(min(1.0, seconds / 3))  # warm-up
    count0, cpu0, own0 = stats.count, server_cpu_ns(server_pid), time.process_time()
    t0 = time.perf_counter()
    stats.recording = True
    await asyncio.sleep(seconds)
    count1, cpu1, own1 = stats.count, server_cpu_ns(server_pid), time.process_time()
    t1 = time.perf_counter()
    stats.running = stats.recording = False
    await asyncio.sleep(0.05)
    close = masked_close_frame()
    for c in [*senders, *others]:
        if c.transport is not None:
            c.transport.write(close)
    await asyncio.sleep(0.1)
    for c in [*senders, *others]:
        if c.transport is not None:
            c.transport.close()
    rounds = count1 - count0
    frame_pairs = rounds * (2 if relay else 1)
    cpu_us = (cpu1 - cpu0) / 1e3
    res: dict[str, Any] = {
        "rounds": rounds,
        "rounds_per_s": rounds / (t1 - t0),
        "server_cpu_us_per_frame_pair": cpu_us / frame_pairs,
        "server_cpu_us_per_round": cpu_us / rounds,
        "server_cpu_pct": (cpu1 - cpu0) / 1e9 / (t1 - t0) * 100,
        "client_cpu_us_per_round": (own1 - own0) * 1e6 / rounds,
        "bad": stats.bad + node_stats.bad,
        "connections_lost": stats.lost + node_stats.lost,
    }
    if stats.rtts:
        q = statistics.quantiles(stats.rtts, n=100)
        res["p50_us"], res["p99_us"] = q[49] / 1e3, q[98] / 1e3
    return res


def client_worker(port: int, server_pid: int, workload: str, seconds: float) -> dict[str, Any]:
    import uvloop

    pinned = pin(CLIENT_CPU)
    res = uvloop.run(client_run(port, server_pid, workload, seconds))
    res["client_pinned"] = pinned
    return res


# =========================================================================== orchestration


def run_one(server_name: str, workload: str, seconds: float) -> dict[str, Any] | None:
    """A fresh server process and a fresh client process for one measurement."""
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(
            [sys.executable, __file__, "--worker", "server", "--candidate", server_name],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert server.stdout is not None
            hello = json.loads(server.stdout.readline() or "{}")
            if "port" not in hello:
                print(f"  {server_name}: server did not start", flush=True)
                return None
            cmd = [sys.executable, __file__, "--worker", "client", "--workload", workload]
            cmd += ["--port", str(hello["port"]), "--server-pid", str(server.pid)]
            cmd += ["--seconds", str(seconds)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
            if done.returncode != 0:
                print(f"  {server_name}/{workload}: FAILED\n{done.stderr[-1500:]}", flush=True)
                return None
            res: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            res["server_pinned"] = hello["pinned"]
            return res
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.seek(0)
            if errors := log.read().strip():
                print(f"  {server_name}/{workload}: server stderr: {errors[-1500:]}", flush=True)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("aiohttp", "picows", "uvloop"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="shorter windows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--json", help="also write every run's raw result here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--candidate", help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.worker == "server":
        server_worker(ns.candidate)
        return
    if ns.worker == "client":
        print(json.dumps(client_worker(ns.port, ns.server_pid, ns.workload, ns.seconds)))
        return

    rtt_s, tput_s = (0.7, 1.5) if ns.quick else (2.0, 5.0)
    servers = [s for s in ns.servers.split(",") if s]
    loads = [w for w in ns.workloads.split(",") if w]
    print(f"loadavg at start: {loadavg()}; cpus {os.cpu_count()}; {versions()}", flush=True)
    runs: list[dict[str, Any]] = []
    for rep in range(ns.repeats):  # repeats outermost, so drift in machine load hits all alike
        print(f"rep {rep + 1}/{ns.repeats}: loadavg {loadavg()}", flush=True)
        for load in loads:
            for name in servers:
                res = run_one(name, load, tput_s if load.endswith("tput") else rtt_s)
                if res is None:
                    continue
                res.update(candidate=name, workload=load, rep=rep, loadavg=loadavg())
                runs.append(res)
                print(
                    f"  {name:8s}{load:11s} {res['rounds_per_s']:8.0f} rounds/s  server "
                    f"{res['server_cpu_us_per_frame_pair']:6.1f} µs/frame pair "
                    f"({res['server_cpu_pct']:3.0f}%)  p50 {res.get('p50_us', 0):7.1f} "
                    f"p99 {res.get('p99_us', 0):7.1f} µs  client "
                    f"{res['client_cpu_us_per_round']:5.1f} µs/round  bad {res['bad']}",
                    flush=True,
                )
    if ns.json:
        Path(ns.json).write_text(json.dumps({"versions": versions(), "runs": runs}, indent=1))
    report(runs, servers, loads)


def report(runs: list[dict[str, Any]], servers: list[str], loads: list[str]) -> None:
    def vals(name: str, load: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["candidate"] == name and r["workload"] == load]

    def span(name: str, load: str, key: str, fmt: str = ".1f") -> str:
        got = vals(name, load, key)
        if not got:
            return "-"
        return f"{statistics.median(got):{fmt}} ({min(got):{fmt}}–{max(got):{fmt}})"

    print(
        "\nMedians of the repeats, (min–max)\n\n| workload | server | server CPU µs / frame pair "
        "| rounds/s | p50 µs | p99 µs | server CPU % |\n|---|---|---|---|---|---|---|"
    )
    for load in loads:
        for name in servers:
            print(
                f"| {load} | {name} | {span(name, load, 'server_cpu_us_per_frame_pair')} "
                f"| {span(name, load, 'rounds_per_s', ',.0f')} "
                f"| {span(name, load, 'p50_us')} | {span(name, load, 'p99_us')} "
                f"| {span(name, load, 'server_cpu_pct', '.0f')} |"
            )
    if set(servers) >= {"aiohttp", "picows"}:
        print("\nratio aiohttp / picows, server CPU per frame pair (medians):")
        for load in loads:
            a = vals("aiohttp", load, "server_cpu_us_per_frame_pair")
            b = vals("picows", load, "server_cpu_us_per_frame_pair")
            if a and b:
                print(f"  {load}: {statistics.median(a) / statistics.median(b):.2f}×")
    pinned = all(r.get("server_pinned") and r.get("client_pinned") for r in runs)
    bad = sum(r.get("bad", 0) for r in runs)
    print(
        f"\npinned server to CPU {SERVER_CPU}, client to CPU {CLIENT_CPU}: {pinned}; "
        f"bad payloads: {bad}; loadavg at end: {loadavg()}"
    )


if __name__ == "__main__":
    main()
