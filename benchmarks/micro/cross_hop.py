"""Micro-benchmark: where a cross-instance ``job_assign`` spends its time, hop by hop (issue 10).

A session on instance A is placed on a node held by B.  The frame goes: A's ``RemoteNode.write``
→ ``ClusterStore.send_soon`` → ``cluster_send.lua`` (``XADD`` to B's inbox) → B's blocking
``XREADGROUP`` returns → B's relay writes the frame to the node's socket → the node reads it.
This runs exactly that code (``switchboard.cluster.relay``, ``switchboard.store.cluster``) in
three processes on one private ``redis-server``:

  A     a ``Relay`` with one ``RemoteNode`` peer (the node ``n1`` on ``b``), writing a
        ``job_assign`` of the E4 size (1 KiB of audio, base64) at a steady pace
  B     a ``Relay`` reading its inbox, the node ``n1`` a ``LocalNode`` whose ``write`` is a
        TCP socket write to the node
  node  this (parent) process: a TCP server that stamps each frame as it arrives

Every process stamps with ``time.perf_counter`` (``CLOCK_MONOTONIC``: one clock for every
process of the machine), per job:

  a_write   A hands the frame to its peer (``RemoteNode.write``)
  a_sent    that call has returned: the script call is on the socket
  a_reply   the send script's reply reaches A's callback
  b_read    B's ``XREADGROUP`` returned it (``ClusterStore.receive`` returned)
  b_write   B writes it to the node's socket (``LocalNode.write``)
  n_recv    the node has read it

and it reports the hops' percentiles in µs.  ``--floor`` adds a baseline, outside the project's
code: two bare hiredis connections, one ``XADD``-ing, one blocked in ``XREADGROUP``, in two
processes, at the same pace: one Redis round trip plus one process wake-up, which is what any
design that crosses through Redis pays.

Run (from the repo root, the project's .venv; redis-server on PATH):

    cat /proc/loadavg
    .venv/bin/python benchmarks/micro/cross_hop.py [--rate 300] [--count 3000] [--floor]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import uvloop
from prometheus_client import CollectorRegistry

from switchboard.cluster.relay import Relay
from switchboard.dispatch.driver import DispatchDriver
from switchboard.store.cluster import ClusterStore
from switchboard.store.cluster_values import InboxEntry
from switchboard.tools.procs import RedisProcess

NAMESPACE = "xhop"
WARMUP = 200


def job_assign(seq: int, t0: float) -> bytes:
    audio = base64.b64encode(os.urandom(1024)).decode()
    return json.dumps(
        {
            "type": "job_assign",
            "job_id": f"job-{seq}",
            "attempt_id": 1,
            "session_id": "s-1",
            "utterance_index": seq,
            "src_lang": "en",
            "tgt_lang": "de",
            "audio_format": "pcm16",
            "sample_rate": 16000,
            "audio": audio,
            "bench_t0": t0,
        },
        separators=(",", ":"),
    ).encode()


def seq_of(frame: bytes) -> int:
    i = frame.index(b'"utterance_index":') + len(b'"utterance_index":')
    return int(frame[i : frame.index(b",", i)])


# --- B: the node's instance ------------------------------------------------------------------


class _Node:
    """The node ``n1`` on B: its frames go to the node process's TCP socket."""

    def __init__(self, transport: asyncio.Transport, stamps: dict[int, list[float]]) -> None:
        self.node_id = "n1"
        self.routes: dict[str, str] | None = None
        self._transport = transport
        self._stamps = stamps
        self.read_at = 0.0

    def write(self, frame: bytes) -> bool:
        t = time.perf_counter()
        self._transport.write(frame + b"\n")
        self._stamps[seq_of(frame)] = [self.read_at, t]
        return True


async def run_b(url: str, node_port: int, out: Path) -> None:
    store = ClusterStore.from_url(url, namespace=NAMESPACE)
    await store.open_inbox("b")
    await store.announce("b", "{}", ttl_s=600)
    transport, _ = await asyncio.get_running_loop().create_connection(
        asyncio.Protocol, "127.0.0.1", node_port
    )
    stamps: dict[int, list[float]] = {}
    node = _Node(cast(asyncio.Transport, transport), stamps)
    receive = store.receive

    async def stamped(*args: Any, **kwargs: Any) -> list[InboxEntry]:
        entries = await receive(*args, **kwargs)
        node.read_at = time.perf_counter()
        return entries

    store.receive = stamped  # type: ignore[method-assign]
    relay = Relay(
        store,
        "b",
        dispatcher=cast(DispatchDriver, None),  # only job_assign arrives: the core is not used
        local_node=lambda node_id: node if node_id == "n1" else None,
        registry=CollectorRegistry(),
    )
    relay.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await relay.stop()
    await store.close()
    out.write_text(json.dumps(stamps))


# --- A: the session's instance ---------------------------------------------------------------


async def run_a(url: str, rate: float, count: int, out: Path) -> None:
    store = ClusterStore.from_url(url, namespace=NAMESPACE)
    await store.announce("a", "{}", ttl_s=600)
    relay = Relay(
        store,
        "a",
        dispatcher=cast(DispatchDriver, None),
        local_node=lambda node_id: None,
        registry=CollectorRegistry(),
    )
    peer = relay.peer("n1", "b")
    stamps: dict[int, list[float]] = {}
    sent = relay._sent
    order: list[int] = []  # one send per frame here, so replies come in send order

    def replied(results: Any, error: BaseException | None) -> None:
        stamps[order.pop(0)].append(time.perf_counter())
        sent(results, error)

    relay._sent = replied  # type: ignore[method-assign]
    frames = [job_assign(i, 0.0) for i in range(count + WARMUP)]
    interval = 1.0 / rate
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.perf_counter()
        stamps[i] = [t]
        order.append(i)
        peer.write(frame)
        stamps[i].append(time.perf_counter())
    await asyncio.sleep(0.5)
    await store.close()
    out.write_text(json.dumps(stamps))


# --- the floor: bare hiredis, XADD in one process, XREADGROUP BLOCK in another ---------------


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Any]:
    import hiredis

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, writer, hiredis.Reader()


async def _reply(reader: asyncio.StreamReader, parser: Any) -> Any:
    while True:
        got = parser.gets()
        if got is not False:
            return got
        parser.feed(await reader.read(65536))


async def run_floor_b(port: int, node_port: int, count: int, out: Path) -> None:
    import hiredis

    reader, writer, parser = await _raw(port)
    writer.write(hiredis.pack_command(("XGROUP", "CREATE", "floor", "g", "$", "MKSTREAM")))
    await _reply(reader, parser)
    _, node = await asyncio.open_connection("127.0.0.1", node_port)
    print("ready", flush=True)
    stamps: dict[int, list[float]] = {}
    read = hiredis.pack_command(
        ("XREADGROUP", "GROUP", "g", "c", "COUNT", "512", "BLOCK", "1000", "STREAMS", "floor", ">")
    )
    while len(stamps) < count + WARMUP:
        writer.write(read)
        reply = await _reply(reader, parser)
        t = time.perf_counter()
        if reply is None and stamps:
            break  # idle for a second after traffic: A is done
        for _entry_id, fields in (reply or [[None, []]])[0][1]:
            frame = fields[1]
            node.write(frame + b"\n")
            stamps[seq_of(frame)] = [t, time.perf_counter()]
    out.write_text(json.dumps(stamps))


async def run_floor_a(port: int, rate: float, count: int, out: Path) -> None:
    import hiredis

    reader, writer, parser = await _raw(port)
    stamps: dict[int, list[float]] = {}
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(count + WARMUP):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = job_assign(i, 0.0)
        t = time.perf_counter()
        writer.write(hiredis.pack_command(("XADD", "floor", "*", "frame", frame)))
        await _reply(reader, parser)
        stamps[i] = [t, time.perf_counter()]
    out.write_text(json.dumps(stamps))


# --- the node and the report -----------------------------------------------------------------


class _Receiver(asyncio.Protocol):
    def __init__(self, stamps: dict[int, float]) -> None:
        self._stamps = stamps
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        t = time.perf_counter()
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self._stamps[seq_of(line)] = t


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, rows: dict[str, list[float]]) -> dict[str, Any]:
    print(f"\n{label}: µs per job (n={len(next(iter(rows.values())))})")
    print(f"  {'hop':<34} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}")
    summary: dict[str, Any] = {}
    for name, values in rows.items():
        us = [v * 1e6 for v in values]
        line = [pct(us, 0.5), pct(us, 0.9), pct(us, 0.99), statistics.fmean(us)]
        summary[name] = line
        print(f"  {name:<34} " + " ".join(f"{v:8.0f}" for v in line))
    return summary


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


async def run_pair(
    name: str, b_args: list[str], a_args: list[str], count: int, work: Path
) -> tuple[dict[int, float], dict[str, Any], dict[str, Any]]:
    received: dict[int, float] = {}
    server = await asyncio.get_running_loop().create_server(
        lambda: _Receiver(received), "127.0.0.1", 0
    )
    node_port = server.sockets[0].getsockname()[1]
    b_out, a_out = work / f"{name}-b.json", work / f"{name}-a.json"
    b = spawn(*b_args, "--node-port", str(node_port), "--out", str(b_out))
    assert b.stdout is not None and b.stdin is not None
    loop = asyncio.get_running_loop()
    assert (await loop.run_in_executor(None, b.stdout.readline)).strip() == "ready"
    a = spawn(*a_args, "--out", str(a_out))
    await loop.run_in_executor(None, a.wait)
    await asyncio.sleep(0.3)
    with contextlib.suppress(BrokenPipeError):  # the floor's reader stops by itself
        b.stdin.write("stop\n")
        b.stdin.flush()
    await loop.run_in_executor(None, b.wait)
    server.close()
    a_st = {int(k): v for k, v in json.loads(a_out.read_text()).items()}
    b_st = {int(k): v for k, v in json.loads(b_out.read_text()).items()}
    return received, a_st, b_st


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="xhop-"))
    redis = RedisProcess(work)
    redis.start()
    try:
        with open("/proc/loadavg") as f:
            print("loadavg at start:", f.read().strip())
        common = ["--rate", str(args.rate), "--count", str(args.count)]
        results: dict[str, Any] = {}
        recv, a_st, b_st = await run_pair(
            "relay",
            ["--role", "b", "--url", redis.url],
            ["--role", "a", "--url", redis.url, *common],
            args.count,
            work,
        )
        jobs = [i for i in range(WARMUP, args.count + WARMUP) if i in recv and i in b_st]
        lost = args.count - len(jobs)
        rows = {
            "A write -> A's write returns": [a_st[i][1] - a_st[i][0] for i in jobs],
            "A write -> script reply on A": [a_st[i][2] - a_st[i][0] for i in jobs],
            "A write -> B XREADGROUP returns": [b_st[i][0] - a_st[i][0] for i in jobs],
            "B read returns -> B socket write": [b_st[i][1] - b_st[i][0] for i in jobs],
            "B socket write -> node receives": [recv[i] - b_st[i][1] for i in jobs],
            "A write -> node receives (total)": [recv[i] - a_st[i][0] for i in jobs],
        }
        results["relay"] = report("relay (the project's code)", rows)
        results["relay"]["missing"] = lost
        if args.floor:
            recv, a_st, b_st = await run_pair(
                "floor",
                ["--role", "floor-b", "--port", str(redis.port), *common],
                ["--role", "floor-a", "--port", str(redis.port), *common],
                args.count,
                work,
            )
            jobs = [i for i in range(WARMUP, args.count + WARMUP) if i in recv and i in b_st]
            rows = {
                "XADD -> its reply": [a_st[i][1] - a_st[i][0] for i in jobs],
                "XADD -> XREADGROUP returns": [b_st[i][0] - a_st[i][0] for i in jobs],
                "read returns -> socket write": [b_st[i][1] - b_st[i][0] for i in jobs],
                "socket write -> node receives": [recv[i] - b_st[i][1] for i in jobs],
                "XADD -> node receives (total)": [recv[i] - a_st[i][0] for i in jobs],
            }
            results["floor"] = report("floor (bare hiredis, no project code)", rows)
        with open("/proc/loadavg") as f:
            print("\nloadavg at end:", f.read().strip())
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        if lost:
            print(f"\n{lost} jobs missing a stamp", file=sys.stderr)
    finally:
        redis.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="main")
    parser.add_argument("--url", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--node-port", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--rate", type=float, default=300.0, help="jobs/s (default 300)")
    parser.add_argument("--count", type=int, default=3000, help="jobs measured (default 3000)")
    parser.add_argument("--floor", action="store_true", help="also the bare-hiredis baseline")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    out = Path(args.out)
    role = {
        "main": lambda: main(args),
        "b": lambda: run_b(args.url, args.node_port, out),
        "a": lambda: run_a(args.url, args.rate, args.count, out),
        "floor-b": lambda: run_floor_b(args.port, args.node_port, args.count, out),
        "floor-a": lambda: run_floor_a(args.port, args.rate, args.count, out),
    }[args.role]
    uvloop.run(role())


if __name__ == "__main__":
    cli()
