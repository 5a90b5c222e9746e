"""Micro-benchmark: which asyncio Redis client for the reservation store's hot path?

Runs the project's real Lua scripts (``try_reserve_many.lua`` / ``release_many.lua``) with the
exact KEYS/ARGV layout of ``RedisStore._reserve_many`` / ``_release_many`` against a private
``redis-server`` on a free loopback port, on uvloop, through each candidate client:

  redispy         redis-py asyncio as the project uses it (BlockingConnectionPool(32),
                  decode_responses=True, register_script -> EVALSHA), hiredis import BLOCKED
  redispy-hiredis the same with hiredis importable (redis-py then picks _AsyncHiredisParser)
  coredis         coredis Redis(decode_responses=True), register_script -> Script (EVALSHA)
  glide           valkey-glide GlideClient, Script + invoke_script (Rust core, one connection)
  pipelined       PipelinedClient below: one asyncio.Protocol, pre-encoded EVALSHA,
                  hiredis.Reader, FIFO of futures (many calls in flight on one socket)
  production      the shipped version of it, switchboard.store.pipelined.PipelinedClient
                  (what RedisStore's reserve/release use), on the same settings

Workloads (each in a fresh subprocess, after FLUSHALL + SCRIPT FLUSH, so every client also
goes through its NOSCRIPT -> SCRIPT LOAD -> retry path once):

  seq      one task: reserve(1 request) then release(1 lease), N times (default 20,000)
  conc     64 tasks each looping reserve(1)+release(1), ~5 s, no batching
  batch    one task: reserve(16 requests) then release(16 leases), N times

Run:  /tmp/rcvenv/bin/python benchmarks/micro/redis_clients.py            (see README.md)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parents[2] / "src" / "switchboard" / "store" / "lua"
CANDIDATES = ["redispy", "redispy-hiredis", "coredis", "glide", "pipelined", "production"]
WORKLOADS = ["seq", "conc", "batch"]
N_NODES, CAPACITY, N_CANDIDATES, LEASE_MS = 200, 4, 4, 30_000


def lua(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text("utf-8")


# --------------------------------------------------------------------------- pipelined client


class RedisReplyError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


class PipelinedClient(asyncio.Protocol):
    """One connection, many commands in flight; replies are matched to a FIFO of futures."""

    def __init__(self) -> None:
        import hiredis  # only this client (and redispy-hiredis) needs it

        self._nodata = object()
        self._reader = hiredis.Reader(
            encoding="utf-8", replyError=RedisReplyError, notEnoughData=self._nodata
        )
        self._pending: list[asyncio.Future[Any]] = []  # FIFO; popped from the head in bulk
        self._head = 0
        self._transport: asyncio.Transport | None = None
        self._lost: Exception | None = None
        self._sources: dict[str, bytes] = {}  # sha -> script source, for NOSCRIPT

    @classmethod
    async def connect(cls, host: str, port: int) -> PipelinedClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(cls, host, port)
        return proto

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        nodata, pending = self._nodata, self._pending
        while (reply := self._reader.gets()) is not nodata:
            fut = pending[self._head]
            self._head += 1
            if not fut.done():  # a cancelled caller's reply is read and dropped
                if isinstance(reply, RedisReplyError):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)
        if self._head > 1024 or self._head == len(pending):
            del pending[: self._head]
            self._head = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = ConnectionError(f"redis connection lost: {exc or 'closed'}")
        pending, self._pending, self._head = self._pending[self._head :], [], 0
        for fut in pending:
            if not fut.done():
                fut.set_exception(self._lost)

    # -- commands
    @staticmethod
    def encode(*args: str | bytes | int) -> bytes:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(b), b))
        return b"".join(parts)

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """Write one pre-encoded command; the future gets its reply (or its error)."""
        fut = asyncio.get_running_loop().create_future()
        if self._lost is not None or self._transport is None or self._transport.is_closing():
            fut.set_exception(self._lost or ConnectionError("redis connection closed"))
            return fut
        self._pending.append(fut)
        self._transport.write(payload)
        return fut

    def script(self, source: str) -> str:
        import hashlib

        sha = hashlib.sha1(source.encode()).hexdigest()
        self._sources[sha] = source.encode()
        return sha

    async def evalsha(self, sha: str, keys: list[str], args: list[str | int]) -> Any:
        payload = self.encode("EVALSHA", sha, len(keys), *keys, *args)
        try:
            return await self.send(payload)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.send(self.encode("SCRIPT", "LOAD", self._sources[sha]))  # then retry once
        return await self.send(payload)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


# --------------------------------------------------------------------------- adapters
# Each adapter: ``await setup(port)``, ``await call(name, keys, args)`` -> decoded list
# (str node ids / '' for reserve, ints for release), ``await close()``, ``info`` dict.


class RedisPyAdapter:
    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    async def setup(self, port: int) -> None:
        import redis
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        pool = BlockingConnectionPool.from_url(  # RedisStore.from_url's settings (pool of 32)
            f"redis://127.0.0.1:{port}/0", max_connections=int(os.environ.get("RCBENCH_POOL", 32)),
            timeout=1.0,
            decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), retries=1),
        )
        self.client = Redis(connection_pool=pool)
        self.scripts = {n: self.client.register_script(lua(n)) for n in ("try_reserve_many", "release_many")}
        conn = await pool.get_connection()
        self.info = {"redis_py": redis.__version__, "parser": type(conn._parser).__name__,
                     "pool": pool.max_connections}
        await pool.release(conn)

    async def call(self, name: str, keys: list[str], args: list[Any]) -> list[Any]:
        return await self.scripts[name](keys=keys, args=args)

    async def close(self) -> None:
        await self.client.aclose()


class CoredisAdapter:
    async def setup(self, port: int) -> None:
        import coredis

        self.client = coredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        await self.client.__aenter__()  # coredis 6 needs the client entered (anyio task group)
        self.scripts = {n: self.client.register_script(lua(n)) for n in ("try_reserve_many", "release_many")}
        self.info = {"coredis": coredis.__version__}

    async def call(self, name: str, keys: list[str], args: list[Any]) -> list[Any]:
        return await self.scripts[name](keys, args)

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)


class GlideAdapter:
    async def setup(self, port: int) -> None:
        from importlib.metadata import version

        from glide import GlideClient, GlideClientConfiguration, NodeAddress, Script

        cfg = GlideClientConfiguration([NodeAddress("127.0.0.1", port)], request_timeout=1000)
        self.client = await GlideClient.create(cfg)
        self.scripts = {n: Script(lua(n)) for n in ("try_reserve_many", "release_many")}
        self.info = {"valkey_glide": version("valkey-glide")}

    async def call(self, name: str, keys: list[str], args: list[Any]) -> list[Any]:
        # glide takes str/bytes only and returns bytes (no decode_responses): convert here.
        reply = await self.client.invoke_script(
            self.scripts[name], keys=keys, args=[a if isinstance(a, str) else str(a) for a in args]
        )
        return [r.decode() if isinstance(r, bytes) else r for r in reply]

    async def close(self) -> None:
        await self.client.close()


class PipelinedAdapter:
    async def setup(self, port: int) -> None:
        import hiredis

        self.client = await PipelinedClient.connect("127.0.0.1", port)
        self.shas = {n: self.client.script(lua(n)) for n in ("try_reserve_many", "release_many")}
        self.info = {"hiredis": hiredis.__version__}

    async def call(self, name: str, keys: list[str], args: list[Any]) -> list[Any]:
        return await self.client.evalsha(self.shas[name], keys, args)

    async def close(self) -> None:
        self.client.close()


class ProductionAdapter:
    """switchboard.store.pipelined as RedisStore builds it (1 s timeouts, stall after 3 s)."""

    async def setup(self, port: int) -> None:
        import hiredis

        from switchboard.store.pipelined import Endpoint, PipelinedClient, Script

        self.client = PipelinedClient(
            Endpoint(host="127.0.0.1", port=port), connect_timeout_s=1.0, stall_s=3.0
        )
        self.scripts = {n: Script(lua(n)) for n in ("try_reserve_many", "release_many")}
        self.info = {"hiredis": hiredis.__version__}

    async def call(self, name: str, keys: list[str], args: list[Any]) -> list[Any]:
        return await self.client.evalsha(self.scripts[name], keys, args)

    async def close(self) -> None:
        await self.client.close()


ADAPTERS = {
    "redispy": RedisPyAdapter, "redispy-hiredis": RedisPyAdapter, "coredis": CoredisAdapter,
    "glide": GlideAdapter, "pipelined": PipelinedAdapter, "production": ProductionAdapter,
}


# --------------------------------------------------------------------------- workload


class Workload:
    """Builds KEYS/ARGV exactly like RedisStore._reserve_many / _release_many."""

    def __init__(self, adapter: Any, namespace: str) -> None:
        from switchboard.store.keys import StoreKeys

        self.a = adapter
        self.keys = StoreKeys(namespace)
        rng = random.Random(42)
        nodes = [(f"node-{i:03d}", CAPACITY, i % 3) for i in range(N_NODES)]  # id, capacity, tier
        self.cands = [rng.sample(nodes, N_CANDIDATES) for _ in range(4096)]
        self.bad = 0  # replies that break the contract (must stay 0)

    async def reserve(self, requests: list[tuple[list[tuple[str, int, int]], str]]) -> list[str]:
        keys, args = [self.keys.nodes], [len(requests)]
        for cands, holder in requests:
            args += [holder, LEASE_MS, len(cands)]
            for node_id, capacity, tier in cands:
                keys.append(self.keys.slots(node_id))
                args += [node_id, capacity, tier]
        reply = await self.a.call("try_reserve_many", keys, args)
        for (cands, _), node in zip(requests, reply, strict=True):
            self.bad += node not in {c[0] for c in cands}
        return reply

    async def release(self, leases: list[tuple[str, str]]) -> None:
        keys = [self.keys.slots(node_id) for node_id, _ in leases]
        reply = await self.a.call("release_many", keys, [holder for _, holder in leases])
        self.bad += sum(1 for n in reply if n != 1) + (len(reply) != len(leases))

    async def cycle(self, tag: str, i: int, per_call: int, lat: list[int] | None) -> None:
        reqs = [(self.cands[(i * per_call + j) % 4096], f"{tag}-{i}-{j}") for j in range(per_call)]
        t0 = time.perf_counter_ns()
        nodes = await self.reserve(reqs)
        t1 = time.perf_counter_ns()
        await self.release([(n, h) for n, (_, h) in zip(nodes, reqs)])
        if lat is not None:
            lat += (t1 - t0, time.perf_counter_ns() - t1)


def server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_worker(cand: str, workload: str, port: int, server_pid: int, n: int, dur: float) -> dict[str, Any]:
    import gc

    adapter = ADAPTERS[cand]()
    await adapter.setup(port)
    w = Workload(adapter, f"bench-{uuid.uuid4().hex[:8]}")
    per_call = 16 if workload == "batch" else 1
    for i in range(300):  # warm-up (also takes the NOSCRIPT -> SCRIPT LOAD path once)
        await w.cycle("warm", i, per_call, None)
    gc.collect()
    lat: list[int] = []
    errors, last_error = [0], [""]
    s0, c0, t0 = server_cpu_s(server_pid), time.process_time(), time.perf_counter()
    if workload == "conc":
        stop, counts = t0 + dur, [0] * 64

        async def loop(k: int) -> None:
            i = 0
            while time.perf_counter() < stop:
                try:
                    await w.cycle(f"t{k}", i * 64 + k, 1, None)  # tasks use different candidates
                    i += 1
                except Exception as exc:  # e.g. redis-py's pool timeout; counted, not fatal
                    errors[0] += 1
                    last_error[0] = f"{type(exc).__name__}: {exc}"
            counts[k] = i

        await asyncio.gather(*(loop(k) for k in range(64)))
        calls = 2 * sum(counts)
    else:
        for i in range(n):
            await w.cycle("r", i, per_call, lat)
        calls = 2 * n
    wall, cpu, scpu = time.perf_counter() - t0, time.process_time() - c0, server_cpu_s(server_pid) - s0
    await adapter.close()
    out: dict[str, Any] = {
        "candidate": cand, "workload": workload, "calls": calls, "requests": calls * per_call,
        "wall_s": wall, "calls_per_s": calls / wall, "requests_per_s": calls * per_call / wall,
        "cpu_us_per_call": cpu / calls * 1e6, "cpu_us_per_request": cpu / calls / per_call * 1e6,
        "cpu_pct": cpu / wall * 100, "server_cpu_pct": scpu / wall * 100,
        "bad_replies": w.bad, "info": adapter.info, "errors": errors[0], "last_error": last_error[0],
    }
    if lat:
        lat.sort()
        out["p50_us"] = lat[len(lat) // 2] / 1e3
        out["p99_us"] = lat[int(len(lat) * 0.99)] / 1e3
    return out


def worker_main(ns: argparse.Namespace) -> None:
    if ns.worker == "redispy":
        sys.modules["hiredis"] = None  # type: ignore[assignment]  # as in the project's venv
    import uvloop

    res = uvloop.run(run_worker(ns.worker, ns.workload, ns.port, ns.server_pid, ns.iterations, ns.duration))
    print(json.dumps(res))


async def selftest(port: int) -> None:
    """PipelinedClient: NOSCRIPT mid-flight, error replies, connection loss."""
    c = await PipelinedClient.connect("127.0.0.1", port)
    sha = c.script("return {KEYS[1], ARGV[1], 7}")
    calls = [c.evalsha(sha, [f"k{i}"], [i]) for i in range(200)]  # 200 in flight, all NOSCRIPT
    assert await asyncio.gather(*calls) == [[f"k{i}", str(i), 7] for i in range(200)]
    redis_cmd(port, "SCRIPT", "FLUSH")
    assert await c.evalsha(sha, ["a"], ["b"]) == ["a", "b", 7]  # reloaded after a flush
    bad = c.script("return redis.call('NOPE')")
    res = await asyncio.gather(c.evalsha(bad, [], []), c.send(c.encode("PING")), return_exceptions=True)
    assert isinstance(res[0], RedisReplyError) and res[1] == "PONG", res  # error != lost sync
    slow = c.send(c.encode("BLPOP", "nothing", 0))
    redis_cmd(port, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    try:
        await asyncio.wait_for(slow, 2)
        raise AssertionError("pending call survived connection loss")
    except ConnectionError:
        pass
    try:
        await c.evalsha(sha, ["a"], ["b"])
        raise AssertionError("call on a dead connection succeeded")
    except ConnectionError:
        pass
    print("PipelinedClient self-test passed")


# --------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_cmd(port: int, *args: str) -> Any:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as r:
        return r.execute_command(*args)


class Server:
    """A private redis-server (like tests/conftest.py's RedisServer), no persistence."""

    def __enter__(self) -> Server:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server not found on PATH (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="rcbench-")
        for _ in range(3):  # the free port can be taken between probing and binding
            self.port = free_port()
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", self.dir,
                 "--logfile", f"{self.dir}/redis.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    redis_cmd(self.port, "PING")
                    return self
                except Exception:
                    time.sleep(0.02)
            self.__exit__()
        sys.exit("could not start redis-server on a free loopback port (3 tries)")

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iterations", type=int, default=20_000, help="reserve+release cycles of seq")
    p.add_argument("--batch-iterations", type=int, default=5_000, help="... of batch (16 each)")
    p.add_argument("--selftest", action="store_true", help="only check PipelinedClient's error paths")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of the conc workload")
    p.add_argument("--json", help="also write every run's raw result here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.worker:
        return worker_main(ns)

    if ns.selftest:
        with Server() as srv:
            import uvloop

            uvloop.run(selftest(srv.port))
        return
    cands, loads = ns.candidates.split(","), ns.workloads.split(",")
    runs: list[dict[str, Any]] = []
    with Server() as srv:
        print(f"redis-server {redis_cmd(srv.port, 'INFO', 'server')['redis_version']} on 127.0.0.1:{srv.port}; "
              f"python {sys.version.split()[0]}; cpus {os.cpu_count()}", flush=True)
        for rep in range(ns.repeats):  # reps outermost, so drift in machine load hits all alike
            print(f"rep {rep + 1}/{ns.repeats}: loadavg {loadavg()}", flush=True)
            for cand in cands:
                for load in loads:
                    redis_cmd(srv.port, "FLUSHALL")
                    redis_cmd(srv.port, "SCRIPT", "FLUSH")
                    cmd = [sys.executable, __file__, "--worker", cand, "--workload", load,
                           "--port", str(srv.port), "--server-pid", str(srv.proc.pid),
                           "--iterations", str(ns.batch_iterations if load == "batch" else ns.iterations),
                           "--duration", str(ns.duration)]
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode != 0:
                        print(f"  {cand}/{load}: FAILED\n{done.stderr.strip()[-2000:]}", flush=True)
                        continue
                    res = json.loads(done.stdout.strip().splitlines()[-1])
                    res["rep"], res["loadavg"] = rep, loadavg()
                    runs.append(res)
                    print(f"  {cand:16s}{load:6s} {res['calls_per_s']:9.0f} calls/s  "
                          f"{res['cpu_us_per_call']:7.1f} us cpu/call  p50 {res.get('p50_us', 0):6.1f}  "
                          f"bad {res['bad_replies']} errors {res['errors']} {res['last_error']}  "
                          f"{res['info']}", flush=True)
    if ns.json:
        Path(ns.json).write_text(json.dumps(runs, indent=1))
    report(runs, cands, loads)


def report(runs: list[dict[str, Any]], cands: list[str], loads: list[str]) -> None:
    def med(c: str, w: str, key: str) -> float:
        vals = [r[key] for r in runs if r["candidate"] == c and r["workload"] == w and key in r]
        return statistics.median(vals) if vals else float("nan")

    print("\nMedians of all repeats")
    print("| candidate | seq CPU µs/call | seq p50 µs | seq p99 µs | conc calls/s | conc CPU % "
          "| conc redis CPU % | batch16 req/s | batch16 CPU µs/req | batch16 p50 µs/call |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in cands:
        print(f"| {c} | {med(c, 'seq', 'cpu_us_per_call'):.1f} | {med(c, 'seq', 'p50_us'):.1f} "
              f"| {med(c, 'seq', 'p99_us'):.1f} | {med(c, 'conc', 'calls_per_s'):,.0f} "
              f"| {med(c, 'conc', 'cpu_pct'):.0f} | {med(c, 'conc', 'server_cpu_pct'):.0f} "
              f"| {med(c, 'batch', 'requests_per_s'):,.0f} | {med(c, 'batch', 'cpu_us_per_request'):.1f} "
              f"| {med(c, 'batch', 'p50_us'):.1f} |")
    bad = sum(r["bad_replies"] for r in runs)
    print(f"\ncontract violations in replies: {bad}; loadavg at end: {loadavg()}")


if __name__ == "__main__":
    main()
