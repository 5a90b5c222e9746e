"""The latency floor of this machine for "client sends an utterance -> node receives job_assign".

Issue 9: every latency target the scheduler misses is shown against the floor below it: the
kernel's loopback hops, the WebSocket hops, the Redis round trip, each measured here in µs.
Every shape runs in separate processes on loopback, uvloop everywhere, one clock for all
(``time.perf_counter_ns`` is CLOCK_MONOTONIC, shared by every process on the machine): the
sender A stamps each frame with its send time, the receiver B takes its arrival time, and
B - A is the one-way latency.  A waits for B's acknowledgement before it sends the next frame,
so frames never queue behind each other.  Two modes: ``paced`` (one frame every
1/rate s: every process sleeps between frames, so each hop pays a wake-up, as a quiet
scheduler does) and ``b2b`` (the next frame as soon as the last was acknowledged).

Shapes (``--shapes``):

- ``tcp``: A <-> B raw TCP ping-pong (asyncio Protocol, TCP_NODELAY, 600-byte frames each
  way): one-way A->B at B, round trip at A.
- ``tcp-relay``: A -> R -> B over raw TCP; R forwards each 600-byte frame as 700 bytes (a
  100-byte prefix + the frame); B acknowledges to A on a direct TCP side channel.
- ``ws``: A -> S -> B over WebSockets: S is aiohttp with the project's ``ServerSocket``
  (compress off, ``decode_text=False``), ``async for msg in ws``, forwarding with the project's
  ``NodeConnection.write`` (eager ``send_frame``) as the 700-byte frame; A and B are aiohttp
  clients (``ClientSession.ws_connect``, ``decode_text=False``).  The scheduler minus the
  scheduling.
- ``ws-redis``: ``ws`` with one Redis round trip in S between A's frame and the write to B:
  the production ``PipelinedClient.evalsha`` of ``try_reserve_many.lua`` (1 request, 4 of 200
  nodes, KEYS/ARGV as ``RedisStore._reserve_many`` builds them), awaited; after the write S
  releases the lease (``release_many.lua``, awaited, off the measured path).
- ``redis``: the round trip alone: a client process timing ``evalsha`` try_reserve_many,
  release_many and a PING on the same pipelined connection; plus ``redis-benchmark -t ping
  -c 1`` (no Python at all).

The relay processes (R, S) report their own CPU time over the measured frames
(``time.process_time_ns``), i.e. CPU µs per relayed frame (for ``ws-redis`` including the
release call).  Each (shape, mode, repeat) runs in fresh processes; tables give the median over
repeats of each percentile and the minimum over all samples.  Nothing leaves 127.0.0.1; every
loop is bounded by its count and by a deadline.

    .venv/bin/python benchmarks/micro/floor.py --json /tmp/floor.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import queue
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from switchboard.tools.procs import RedisProcess

HOST = "127.0.0.1"
IN_SIZE = 600  # bytes of A's frame: an utterance with a little audio
OUT_SIZE = 700  # bytes of the relayed frame: its job_assign
PREFIX = b'{"type":"job_assign","job_id":"j-0000000001","node_id":"node-042","attempt":1,"x":"'
PREFIX = PREFIX + b"p" * (OUT_SIZE - IN_SIZE - 1 - len(PREFIX)) + b'",'  # + A's frame minus "{"
ACK = 8  # bytes of an acknowledgement: the sequence number
HELLO = b"\xff" * ACK
N_NODES, N_CANDIDATES, CAPACITY, LEASE_MS = 200, 4, 4, 30_000
REDIS_OPS = ("reserve", "release", "ping")
ROOT = Path(__file__).resolve().parents[2]


def frame(seq: int, t0: int) -> bytes:
    """A 600-byte JSON text frame carrying its sequence number and send time (fixed width)."""
    head = b'{"type":"utterance","seq":"%010d","t0":"%020d","audio":"' % (seq, t0)
    return head + b"A" * (IN_SIZE - len(head) - 2) + b'"}'


def parse(data: bytes) -> tuple[int, int]:
    """(seq, t0) of a frame or of its relayed form."""
    i = data.find(b'"seq":"')
    return int(data[i + 7 : i + 17]), int(data[i + 25 : i + 45])


def relayed(data: bytes) -> bytes:
    return PREFIX + data[1:]


assert len(frame(1, 2)) == IN_SIZE and len(relayed(frame(1, 2))) == OUT_SIZE
assert parse(relayed(frame(7, 123456789))) == (7, 123456789)
json.loads(relayed(frame(7, 123456789)))


def stats(samples: Sequence[int]) -> dict[str, float]:
    """Nearest-rank percentiles in µs."""
    s = sorted(samples)
    n = len(s)

    def pct(q: float) -> float:
        return s[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000

    return {
        "n": n,
        "min": s[0] / 1000,
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": s[-1] / 1000,
        "mean": statistics.fmean(s) / 1000,
    }


def emit(kind: str, payload: dict[str, Any]) -> None:
    print(json.dumps({"kind": kind, **payload}), flush=True)


def nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --------------------------------------------------------------------------- raw TCP pieces


class Framed(asyncio.Protocol):
    """Fixed-size frames in; ``on_frame`` gets each with its arrival time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        nodelay(transport)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        buf = self.buf + data if self.buf else data
        size = self.size
        while len(buf) >= size:
            self.on_frame(buf[:size], now)
            buf = buf[size:]
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def on_frame(self, data: bytes, now: int) -> None:
        raise NotImplementedError


class Sink:
    """B's bookkeeping: one-way latencies after the warm-up; acks to A."""

    def __init__(self, warmup: int, count: int) -> None:
        self.warmup, self.total = warmup, warmup + count
        self.got = 0
        self.lat = array("q")
        self.ack: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def arrived(self, data: bytes, now: int) -> int:
        seq, t0 = parse(data)
        if seq != self.got:
            raise RuntimeError(f"frame {seq} arrived, {self.got} expected")
        self.got += 1
        if seq >= self.warmup:
            self.lat.append(now - t0)
        if self.got >= self.total and not self.done.done():
            self.done.set_result(None)
        return seq

    def report(self) -> None:
        emit("oneway", {"stats": stats(self.lat)})


class SinkProto(Framed):
    def __init__(self, sink: Sink, size: int, echo: bool) -> None:
        super().__init__(size)
        self.sink, self.echo = sink, echo

    def on_frame(self, data: bytes, now: int) -> None:
        seq = self.sink.arrived(data, now)
        if self.echo:  # tcp ping-pong: the frame goes back to A
            assert self.transport is not None
            self.transport.write(data)
        elif self.sink.ack is not None:
            self.sink.ack.write(seq.to_bytes(ACK, "big"))


class AckListener(asyncio.Protocol):
    """B's side-channel server: A connects, B writes acks to it."""

    def __init__(self, sink: Sink, ready: asyncio.Future[None]) -> None:
        self.sink, self.ready = sink, ready

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        nodelay(transport)
        self.sink.ack = cast(asyncio.Transport, transport)
        self.sink.ack.write(HELLO)  # A starts only once B can acknowledge
        if not self.ready.done():
            self.ready.set_result(None)


async def role_sink(ns: argparse.Namespace) -> None:
    """B.  tcp: listens for A, echoes.  tcp-relay: connects to R.  ws*: ws_connect to S."""
    loop = asyncio.get_running_loop()
    sink = Sink(ns.warmup, ns.count)
    acked: asyncio.Future[None] = loop.create_future()
    if ns.shape == "tcp":
        server = await loop.create_server(lambda: SinkProto(sink, IN_SIZE, True), HOST, 0)
        emit("ready", {"port": server.sockets[0].getsockname()[1]})
        await asyncio.wait_for(sink.done, ns.deadline)
        sink.report()
        return
    ack_server = await loop.create_server(lambda: AckListener(sink, acked), HOST, 0)
    ack_port = ack_server.sockets[0].getsockname()[1]
    if ns.shape == "tcp-relay":
        await loop.create_connection(lambda: SinkProto(sink, OUT_SIZE, False), HOST, ns.port)
        emit("ready", {"port": ack_port})
        await asyncio.wait_for(sink.done, ns.deadline)
        sink.report()
        return
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"ws://{HOST}:{ns.port}/b", compress=0, decode_text=False, autoping=True
        ) as ws,
    ):
        emit("ready", {"port": ack_port})
        async with asyncio.timeout(ns.deadline):
            while sink.got < sink.total:
                msg = await ws.receive()
                now = time.perf_counter_ns()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"B got {msg.type}")
                seq = sink.arrived(msg.data, now)
                if sink.ack is not None:
                    sink.ack.write(seq.to_bytes(ACK, "big"))
    sink.report()


class AckProto(Framed):
    """A's end of the ack channel (or, for tcp, of the echo)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.waiting: asyncio.Future[int] | None = None
        self.hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_frame(self, data: bytes, now: int) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(now)
        elif data == HELLO and not self.hello.done():
            self.hello.set_result(None)


async def role_driver(ns: argparse.Namespace) -> None:
    """A: sends warm-up + count frames, one at a time, paced or back to back."""
    loop = asyncio.get_running_loop()
    ack_size = IN_SIZE if ns.shape == "tcp" else ACK
    ack_tr, ack = await loop.create_connection(lambda: AckProto(ack_size), HOST, ns.ack_port)
    ws: Any = None
    data_tr: asyncio.Transport | None = None
    http: Any = None
    if ns.shape == "tcp":
        data_tr = ack_tr  # ping-pong: B echoes on the same connection
    elif ns.shape == "tcp-relay":
        await asyncio.wait_for(ack.hello, 10)
        data_tr, _ = await loop.create_connection(asyncio.Protocol, HOST, ns.port)
        nodelay(data_tr)
    else:
        await asyncio.wait_for(ack.hello, 10)
        import aiohttp

        http = aiohttp.ClientSession()
        ws = await http.ws_connect(
            f"ws://{HOST}:{ns.port}/a", compress=0, decode_text=False, autoping=True
        )
    from aiohttp import WSMsgType

    rtt = array("q")
    period = 1e9 / ns.rate if ns.mode == "paced" else 0.0
    total = ns.warmup + ns.count
    deadline = time.monotonic() + ns.deadline
    start = time.perf_counter_ns()
    measured_from = start
    for seq in range(total):
        if time.monotonic() > deadline:
            raise TimeoutError(f"driver deadline after {seq} frames")
        if period:
            wait = (start + seq * period - time.perf_counter_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
        if seq == ns.warmup:
            measured_from = time.perf_counter_ns()
        fut: asyncio.Future[int] = loop.create_future()
        ack.waiting = fut
        t0 = time.perf_counter_ns()
        data = frame(seq, t0)
        if data_tr is not None:
            data_tr.write(data)
        else:
            await ws.send_frame(data, WSMsgType.TEXT)
        arrived = await asyncio.wait_for(fut, 5.0)
        if seq >= ns.warmup:
            rtt.append(arrived - t0)
    elapsed = (time.perf_counter_ns() - measured_from) / 1e9
    emit("driver", {"rtt": stats(rtt), "rate": ns.count / elapsed})
    if ws is not None:
        await ws.close()
        await http.close()


class RelayIn(Framed):
    def __init__(self, relay: Relay) -> None:
        super().__init__(IN_SIZE)
        self.relay = relay

    def on_frame(self, data: bytes, now: int) -> None:
        self.relay.forward(data)


class RelayOut(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        nodelay(transport)
        self.relay.out = cast(asyncio.Transport, transport)


class CpuWindow:
    """Process CPU time over the measured frames (warm-up excluded)."""

    def __init__(self, warmup: int, count: int) -> None:
        self.warmup, self.total = warmup, warmup + count
        self.seen = 0
        self.cpu0 = self.wall0 = 0
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def before(self) -> None:
        if self.seen == self.warmup:
            self.cpu0, self.wall0 = time.process_time_ns(), time.perf_counter_ns()
            self.ru0 = resource.getrusage(resource.RUSAGE_SELF)

    def after(self) -> None:
        self.seen += 1
        if self.seen == self.total and not self.done.done():
            cpu = time.process_time_ns() - self.cpu0
            wall = time.perf_counter_ns() - self.wall0
            ru = resource.getrusage(resource.RUSAGE_SELF)
            n = self.total - self.warmup
            emit(
                "relay",
                {
                    "cpu_us_per_frame": cpu / n / 1000,
                    "cpu_pct": 100 * cpu / wall,
                    # the kernel's split (tick-sampled on most kernels: a proportion only)
                    "user_us_per_frame": (ru.ru_utime - self.ru0.ru_utime) / n * 1e6,
                    "sys_us_per_frame": (ru.ru_stime - self.ru0.ru_stime) / n * 1e6,
                },
            )
            self.done.set_result(None)


class Relay:
    def __init__(self, window: CpuWindow) -> None:
        self.window = window
        self.out: asyncio.Transport | None = None

    def forward(self, data: bytes) -> None:
        self.window.before()
        assert self.out is not None
        self.out.write(relayed(data))
        self.window.after()


async def role_relay(ns: argparse.Namespace) -> None:
    """R (tcp-relay): A's frames from one port, written to B's connection on the other."""
    loop = asyncio.get_running_loop()
    relay = Relay(CpuWindow(ns.warmup, ns.count))
    a_srv = await loop.create_server(lambda: RelayIn(relay), HOST, 0)
    b_srv = await loop.create_server(lambda: RelayOut(relay), HOST, 0)
    emit(
        "ready",
        {"port": a_srv.sockets[0].getsockname()[1], "port_b": b_srv.sockets[0].getsockname()[1]},
    )
    await asyncio.wait_for(relay.window.done, ns.deadline)


class RedisPath:
    """The Redis store's reserve/release, KEYS/ARGV as RedisStore._reserve_many builds them."""

    def __init__(self, port: int) -> None:
        from switchboard.store.keys import StoreKeys
        from switchboard.store.pipelined import Endpoint, PipelinedClient, Script

        lua = ROOT / "src" / "switchboard" / "store" / "lua"
        self.client = PipelinedClient(
            Endpoint(host=HOST, port=port), connect_timeout_s=1.0, stall_s=3.0
        )
        self.reserve_script = Script((lua / "try_reserve_many.lua").read_text())
        self.release_script = Script((lua / "release_many.lua").read_text())
        self.keys = StoreKeys("floor")
        rng = random.Random(42)
        nodes = [(f"node-{i:03d}", CAPACITY, i % 3) for i in range(N_NODES)]
        self.cands = [rng.sample(nodes, N_CANDIDATES) for _ in range(4096)]
        self.bad = 0

    async def reserve(self, seq: int) -> tuple[str, str]:
        cands, holder = self.cands[seq % 4096], f"job-{seq}"
        keys = [self.keys.nodes]
        args: list[str | int] = [1, holder, LEASE_MS, len(cands)]
        for node_id, capacity, tier in cands:
            keys.append(self.keys.slots(node_id))
            args += [node_id, capacity, tier]
        reply = await self.client.evalsha(self.reserve_script, keys, args)
        node = reply[0]
        self.bad += node not in {c[0] for c in cands}
        return node, holder

    async def release(self, node: str, holder: str) -> None:
        reply = await self.client.evalsha(self.release_script, [self.keys.slots(node)], [holder])
        self.bad += reply != [1]

    async def ping(self) -> None:
        conn = self.client._connection()  # the same pipelined connection (private: bench only)
        from switchboard.store.pipelined import _pack

        self.bad += await conn.send(_pack(("PING",))) != "PONG"


async def role_wsserver(ns: argparse.Namespace) -> None:
    """S (ws, ws-redis): aiohttp with the project's ServerSocket and NodeConnection.write."""
    from aiohttp import WSMsgType, web

    from switchboard.server.connections import NodeConnection
    from switchboard.server.sockets import ServerSocket

    window = CpuWindow(ns.warmup, ns.count)
    node: NodeConnection | None = None
    b_ready = asyncio.Event()
    redis = RedisPath(ns.redis_port) if ns.redis_port else None
    if redis is not None:
        await redis.ping()  # connect before anything is measured

    async def b_handler(request: web.Request) -> web.StreamResponse:
        nonlocal node
        ws = ServerSocket(max_frame_bytes=65536, close_timeout=1.0)
        await ws.prepare(request)
        node = NodeConnection("node-b", ws)
        b_ready.set()
        async for _ in ws:
            pass
        return ws

    async def a_handler(request: web.Request) -> web.StreamResponse:
        ws = ServerSocket(max_frame_bytes=65536, close_timeout=1.0)
        await ws.prepare(request)
        await asyncio.wait_for(b_ready.wait(), 10)
        assert node is not None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            window.before()
            data = msg.data
            if redis is None:
                node.write(relayed(data))
            else:
                seq, _ = parse(data)
                chosen, holder = await redis.reserve(seq)
                node.write(relayed(data))
                await redis.release(chosen, holder)
            window.after()
        return ws

    app = web.Application()
    app.router.add_get("/a", a_handler)
    app.router.add_get("/b", b_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    server: Any = site._server  # uvloop's Server
    emit("ready", {"port": server.sockets[0].getsockname()[1]})
    try:
        await asyncio.wait_for(window.done, ns.deadline)
        if redis is not None:
            emit("redis", {"bad": redis.bad})
    finally:
        with contextlib.suppress(Exception):
            if redis is not None:
                await redis.client.close()
        await asyncio.wait_for(runner.cleanup(), 5)


async def role_redis(ns: argparse.Namespace) -> None:
    """The Redis round trip alone: reserve (after the sleep, when paced), release, PING."""
    path = RedisPath(ns.redis_port)
    await path.ping()
    lat: dict[str, array[int]] = {op: array("q") for op in REDIS_OPS}
    period = 1e9 / ns.rate if ns.mode == "paced" else 0.0
    deadline = time.monotonic() + ns.deadline
    start = time.perf_counter_ns()
    for i in range(ns.warmup + ns.count):
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis deadline after {i} calls")
        if period:
            wait = (start + i * period - time.perf_counter_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
        t0 = time.perf_counter_ns()
        node, holder = await path.reserve(i)
        t1 = time.perf_counter_ns()
        await path.release(node, holder)
        t2 = time.perf_counter_ns()
        await path.ping()
        t3 = time.perf_counter_ns()
        if i >= ns.warmup:
            lat["reserve"].append(t1 - t0)
            lat["release"].append(t2 - t1)
            lat["ping"].append(t3 - t2)
    emit("redis", {"bad": path.bad, **{op: stats(v) for op, v in lat.items()}})
    await path.client.close()


ROLES = {
    "sink": role_sink,
    "driver": role_driver,
    "relay": role_relay,
    "wsserver": role_wsserver,
    "redis": role_redis,
}


def child_main(ns: argparse.Namespace) -> None:
    import uvloop

    uvloop.run(ROLES[ns.role](ns))


# --------------------------------------------------------------------------- orchestration


class Child:
    """One role in its own process; stdout lines are JSON records."""

    def __init__(self, args: list[str], log: Path) -> None:
        from switchboard.tools.procs import die_with_parent

        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, *args],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                cwd=ROOT,
            )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.log = log

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))
        self.lines.put(None)

    def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            try:
                rec = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {kind!r} record in {timeout:g}s; see {self.log}") from None
            if rec is None:
                raise RuntimeError(f"child exited before {kind!r}; see {self.log}")
            if rec["kind"] == kind:
                return rec

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cpu_ns(pid: int) -> int:
    """A process's CPU time so far in ns, all threads (``schedstat``: ns, not ticks)."""
    return sum(
        int(stat.read_text().split()[0]) for stat in Path(f"/proc/{pid}/task").glob("*/schedstat")
    )


def run_once(
    shape: str, mode: str, o: argparse.Namespace, redis: RedisProcess, tmp: Path
) -> dict[str, Any]:
    redis_port = redis.port
    assert redis._proc is not None
    redis_cpu0 = cpu_ns(redis._proc.pid)
    out = run_children(shape, mode, o, redis_port, tmp)
    calls = {"redis": 3, "ws-redis": 2}.get(shape, 0) * (o.warmup + o.count)
    if calls:
        out["redis_server_cpu_us_per_call"] = (cpu_ns(redis._proc.pid) - redis_cpu0) / calls / 1000
    return out


def run_children(
    shape: str, mode: str, o: argparse.Namespace, redis_port: int, tmp: Path
) -> dict[str, Any]:
    n_frames = o.warmup + o.count
    deadline = (n_frames / o.rate if mode == "paced" else n_frames * 0.002) + 30
    common = [
        "--shape",
        shape,
        "--mode",
        mode,
        "--warmup",
        str(o.warmup),
        "--count",
        str(o.count),
        "--rate",
        str(o.rate),
        "--deadline",
        str(deadline),
    ]
    log = tmp / f"{shape}-{mode}.log"
    children: list[Child] = []

    def start(role: str, *extra: str) -> Child:
        child = Child(["--role", role, *common, *extra], log)
        children.append(child)
        return child

    try:
        out: dict[str, Any] = {"shape": shape, "mode": mode, "load": loadavg()}
        if shape == "redis":
            rec = start("redis", "--redis-port", str(redis_port)).expect("redis", deadline + 10)
            out.update(rec)
            return out
        relay: Child | None = None
        if shape == "tcp":
            sink = start("sink")
            ack_port = port = sink.expect("ready", 10)["port"]
        else:
            if shape == "tcp-relay":
                relay = start("relay")
                ready = relay.expect("ready", 10)
                port, b_port = ready["port"], ready["port_b"]
            else:
                extra = ["--redis-port", str(redis_port)] if shape == "ws-redis" else []
                relay = start("wsserver", *extra)
                port = b_port = relay.expect("ready", 15)["port"]
            sink = start("sink", "--port", str(b_port))
            ack_port = sink.expect("ready", 15)["port"]
        driver = start("driver", "--port", str(port), "--ack-port", str(ack_port))
        d = driver.expect("driver", deadline + 10)
        out["rtt"], out["rate"] = d["rtt"], d["rate"]
        out["oneway"] = sink.expect("oneway", 10)["stats"]
        if relay is not None:
            r = relay.expect("relay", 10)
            out.update({k: v for k, v in r.items() if k != "kind"})
            if shape == "ws-redis":
                out["bad"] = relay.expect("redis", 10)["bad"]
        return out
    finally:
        for child in reversed(children):
            child.stop()


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def top_cpu() -> str:
    res = subprocess.run(
        ["ps", "-eo", "pcpu,comm", "--sort=-pcpu"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return " | ".join(" ".join(line.split()) for line in res.stdout.splitlines()[1:6])


def redis_benchmark(port: int, n: int) -> dict[str, Any] | None:
    """``redis-benchmark -t ping -n N -c 1 --csv``: PING_INLINE and PING_MBULK, latency in µs."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    cmd = [exe, "-h", HOST, "-p", str(port), "-t", "ping", "-n", str(n), "-c", "1", "--csv"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    rows = [line.replace('"', "").split(",") for line in res.stdout.strip().splitlines()]
    head, body = rows[0], rows[1:]
    out: dict[str, Any] = {"cmd": " ".join(cmd[:1] + cmd[3:])}
    for row in body:
        rec = dict(zip(head, row, strict=True))
        out[rec["test"]] = {k: float(v) * 1000 for k, v in rec.items() if k.endswith("_ms")} | {
            "rps": float(rec["rps"])
        }
    return out


def run_logged(
    shape: str, mode: str, ns: argparse.Namespace, redis: RedisProcess, tmp: Path
) -> dict[str, Any]:
    """One run on an empty Redis; the children's logs go to stderr if it fails."""
    if shape in ("redis", "ws-redis"):
        redis.client().flushall()
    try:
        return run_once(shape, mode, ns, redis, tmp)
    except Exception:
        for log in tmp.glob("*.log"):
            print(f"--- {log}\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--role", choices=sorted(ROLES))
    p.add_argument("--shape", default="tcp")
    p.add_argument("--mode", default="b2b", choices=["paced", "b2b"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ack-port", type=int, default=0)
    p.add_argument("--redis-port", type=int, default=0)
    p.add_argument("--deadline", type=float, default=120.0)
    p.add_argument("--shapes", default="tcp,tcp-relay,ws,ws-redis,redis")
    p.add_argument("--modes", default="paced,b2b")
    p.add_argument("--count", type=int, default=20_000, help="measured samples per run")
    p.add_argument("--warmup", type=int, default=2_000)
    p.add_argument("--rate", type=float, default=500.0, help="frames/s in paced mode")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--pin", type=int, default=-1, help="run every process (redis-server too) on this one CPU"
    )
    ns = p.parse_args()
    if ns.role:
        child_main(ns)
        return
    if not 0 < ns.count <= 200_000 or not 0 <= ns.warmup <= 50_000 or not 1 <= ns.repeats <= 10:
        p.error("--count 1..200000, --warmup 0..50000, --repeats 1..10")
    if not 10 <= ns.rate <= 5000:
        p.error("--rate 10..5000")
    if ns.pin >= 0:  # inherited by every child: all wake-ups stay on one CPU (no IPI)
        os.sched_setaffinity(0, {ns.pin})
    sys.path.insert(0, str(ROOT / "src"))
    from switchboard.tools.procs import RedisProcess

    shapes, modes = ns.shapes.split(","), ns.modes.split(",")
    import aiohttp

    info = {
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "uvloop": importlib.metadata.version("uvloop"),
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "redis": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip(),
    }
    print(json.dumps(info), file=sys.stderr)
    runs: list[dict[str, Any]] = []
    loads: list[str] = []
    with tempfile.TemporaryDirectory(prefix="floor-") as tmpname:
        tmp = Path(tmpname)
        redis = RedisProcess(tmp)
        redis.start()
        try:
            for rep in range(ns.repeats):
                loads.append(f"repeat {rep + 1}: loadavg {loadavg()}; top {top_cpu()}")
                print(loads[-1], file=sys.stderr)
                for shape in shapes:
                    for mode in modes:
                        run = run_logged(shape, mode, ns, redis, tmp)
                        run["repeat"] = rep
                        runs.append(run)
                        print(json.dumps(run), file=sys.stderr)
                bench = redis_benchmark(redis.port, ns.count) if "redis" in shapes else None
                if bench is not None:
                    runs.append(
                        {
                            "shape": "redis-benchmark",
                            "mode": "b2b",
                            "repeat": rep,
                            "load": loadavg(),
                            **bench,
                        }
                    )
                    print(json.dumps(runs[-1]), file=sys.stderr)
            loads.append(f"end: loadavg {loadavg()}; top {top_cpu()}")
        finally:
            redis.stop()
    if ns.json:
        ns.json.write_text(json.dumps({"info": info, "loads": loads, "runs": runs}, indent=1))
    report(runs, loads)


Rows = list[dict[str, Any]]


def agg(rows: Rows, key: str) -> str:
    """Median over repeats of each percentile; the minimum over every sample."""
    sts = [r[key] for r in rows]
    med = {q: statistics.median(s[q] for s in sts) for q in ("p50", "p90", "p99")}
    low = min(s["min"] for s in sts)
    return f"{med['p50']:.1f} | {med['p90']:.1f} | {med['p99']:.1f} | {low:.1f}"


def med(rows: Rows, key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def cpu_col(rows: Rows) -> str:
    parts = []
    if "cpu_us_per_frame" in rows[0]:
        user, sys_ = med(rows, "user_us_per_frame"), med(rows, "sys_us_per_frame")
        parts.append(
            f"relay {med(rows, 'cpu_us_per_frame'):.1f} (user {user:.0f} / sys {sys_:.0f})"
        )
    if "redis_server_cpu_us_per_call" in rows[0]:
        parts.append(f"redis-server {med(rows, 'redis_server_cpu_us_per_call'):.1f}/call")
    return "; ".join(parts) or "–"


def bench_rows(rows: Rows, loadcol: str) -> list[str]:
    out = []
    for test in ("PING_INLINE", "PING_MBULK"):
        vals = [r[test] for r in rows if test in r]
        if vals:
            p50 = statistics.median(v["p50_latency_ms"] for v in vals)
            p99 = statistics.median(v["p99_latency_ms"] for v in vals)
            low = min(v["min_latency_ms"] for v in vals)
            out.append(
                f"| redis-benchmark {test} rtt | b2b | {p50:.1f} | – | {p99:.1f} | "
                f"{low:.1f} | – | {loadcol} |"
            )
    return out


def report(runs: Rows, loads: list[str]) -> None:
    print(
        "\n| measure | mode | p50 µs | p90 µs | p99 µs | min µs | CPU µs/frame or call | load 1m |"
    )
    print("|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], Rows] = {}
    for r in runs:
        groups.setdefault((r["shape"], r["mode"]), []).append(r)
    for (shape, mode), rows in groups.items():
        loadcol = ", ".join(r["load"].split()[0] for r in rows)
        if shape == "redis-benchmark":
            print("\n".join(bench_rows(rows, loadcol)))
        elif shape == "redis":
            for op in REDIS_OPS:
                col = cpu_col(rows) if op == "reserve" else "–"
                print(f"| redis {op} rtt | {mode} | {agg(rows, op)} | {col} | {loadcol} |")
        else:
            cols = f"{agg(rows, 'oneway')} | {cpu_col(rows)} | {loadcol}"
            print(f"| {shape} one-way | {mode} | {cols} |")
            if shape == "tcp":
                print(f"| tcp round trip | {mode} | {agg(rows, 'rtt')} | – | {loadcol} |")
    print()
    for line in loads:
        print(f"- {line}")


if __name__ == "__main__":
    main()
