"""Micro-benchmark of the scheduler's hot path: JSON codec, event loop, WebSocket server library.

Issue 4: measure the alternatives before choosing.  Three measurements, each (candidate,
workload, repeat) in a fresh subprocess, repeats outermost, medians of the repeats:

  codec   decode+validate one realistic ``utterance`` frame (built like bench/fakes.py: ~1.5 KB,
          base64 audio, opaque ``bench_t0``) and encode its ``job_assign``, with
            msgspec   the project's codec: ``decode_session`` + ``raw_fields``, ``job_assign``
            json      stdlib json.loads + hand-written checks of the same fields/types/bounds,
                      dict merge + json.dumps(...).encode()
            orjson    the same checks on orjson.loads, orjson.dumps
            pydantic  TypeAdapter(discriminated union of the 4 session messages, strict)
                      .validate_json + pydantic_core.from_json for the opaque fields,
                      pydantic_core.to_json
          Before timing, every candidate must reject the same list of bad frames and produce
          the same job_assign (compared after json.loads).
  rtt     WebSocket echo, one connection, client sends a 1.5 KB text frame, waits for the echo,
          repeats (~2 s after a warm-up): round trip p50/p99, server CPU µs per echoed message
  tput    64 client connections echoing in a loop for ~5 s: messages/s, server CPU µs/message

Servers (one process, pinned to CPU 0 when sched_setaffinity works):
  aiohttp/asyncio, aiohttp/uvloop   switchboard.server.sockets.ServerSocket (the project's
                                    WebSocketResponse: compress off, decode_text=False),
                                    ``async for msg in ws`` + ``send_frame(bytes, TEXT)``
  websockets/uvloop                 websockets.asyncio.server.serve, ``async for msg in ws`` +
                                    ``send(msg)`` (str: UTF-8 decoded and re-encoded)
  websockets-bytes/uvloop           the same with ``recv(decode=False)`` + ``send(b, text=True)``
                                    (bytes in and out, like the project's aiohttp path)

Client (one process, pinned to CPU 1): the same for every server — a ~70-line asyncio.Protocol
on uvloop that does the HTTP upgrade and writes one pre-built masked frame per message, so
nearly all CPU it costs is the kernel's and it cannot be the bottleneck.  Server CPU is read
from /proc/<pid>/task/*/schedstat (ns, all threads) before and after the measured window.

Run:  /tmp/hpvenv/bin/python benchmarks/micro/hotpath.py [--quick] [--json FILE]  (HOTPATH.md)
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

CODECS = ["msgspec", "json", "orjson", "pydantic"]
SERVERS = ["aiohttp/asyncio", "aiohttp/uvloop", "websockets/uvloop", "websockets-bytes/uvloop"]
WORKLOADS = ["rtt", "tput"]
SERVER_CPU, CLIENT_CPU = 0, 1
MAX_FRAME = 1 << 20


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pin(cpu: int) -> bool:
    try:
        if len(os.sched_getaffinity(0)) < 2:
            return False
        os.sched_setaffinity(0, {cpu})
        return True
    except (AttributeError, OSError):
        return False


# =========================================================================== 1. JSON codec


def utterance_frame() -> bytes:
    """One utterance as bench/fakes.py's FakeSession.send builds it (~1.5 KB)."""
    from switchboard.bench.fakes import audio_b64

    frame = b'{"type":"utterance","session_id":"%s","utterance_index":%d,' % (
        b"s-3f2a9c0e7b1d4e6f8a5c2b0d9e7f1a3c",
        41,
    )
    frame += b'"src_lang":"%s","tgt_lang":"%s","audio_format":"pcm16",' % (b"zh", b"en")
    sent = 123456.789012345
    frame += b'"sample_rate":16000,"bench_t0":%r,"audio":"%s"}' % (sent, audio_b64(1050))
    return frame


ASSIGN_KW: dict[str, Any] = {
    "job_id": "j-9d8c7b6a5f4e3d2c1b0a",
    "attempt_id": 1,
    "session_id": "s-3f2a9c0e7b1d4e6f8a5c2b0d9e7f1a3c",
    "utterance_index": 41,
    "src_lang": "zh",
    "tgt_lang": "en",
    "pipeline": {"use_asr": True, "use_nmt": True, "use_tts": True},
    "trace_id": "t-0123456789abcdef0123456789abcdef",
}
# codec._ASSIGN_OWN: the scheduler's own fields; every other utterance field is copied.
ASSIGN_OWN = frozenset(["type", "token", *ASSIGN_KW])


def bad_frames(good: bytes) -> list[bytes]:
    """Frames every candidate must refuse (type, presence, bounds, nesting, encoding)."""
    base = json.loads(good)

    def variant(**changes: Any) -> bytes:
        d = dict(base)
        for k, v in changes.items():
            if v is ...:
                del d[k]
            else:
                d[k] = v
        return json.dumps(d).encode()

    return [
        b"[1, 2]",
        b'{"type":"utterance"',
        good.replace(b'"audio":"', b'"audio":"\xff'),  # not UTF-8
        variant(type="nope"),
        variant(session_id=...),
        variant(session_id=""),
        variant(session_id="x" * 257),
        variant(utterance_index=-1),
        variant(utterance_index="41"),
        variant(utterance_index=True),
        variant(utterance_index=4.5),
        variant(src_lang=""),
        variant(tgt_lang=7),
        variant(audio=None),
        variant(audio_format=...),
        variant(sample_rate=0),
        variant(sample_rate=16000.5),
        variant(manual_cut="yes"),
        variant(pipeline={"use_asr": 1}),
        variant(pipeline=[True]),
        variant(trace_id="t" * 257),
    ]


class Invalid(ValueError):
    pass


def _check_utf8(frame: bytes) -> None:  # as codec._check_utf8 (json/orjson accept bad bytes)
    if not frame.isascii():
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("not UTF-8") from None


def _need_str(d: dict[str, Any], key: str, lo: int, hi: int | None) -> None:
    v = d.get(key)
    if type(v) is not str or len(v) < lo or (hi is not None and len(v) > hi):
        raise Invalid(key)


def _need_int(d: dict[str, Any], key: str, lo: int) -> None:
    v = d.get(key)
    if type(v) is not int or v < lo:
        raise Invalid(key)


def _optional_checks(d: dict[str, Any]) -> None:
    if d.get("manual_cut") is not None and type(d["manual_cut"]) is not bool:
        raise Invalid("manual_cut")
    pipeline = d.get("pipeline")
    if pipeline is not None:
        if type(pipeline) is not dict:
            raise Invalid("pipeline")
        for k in ("use_asr", "use_nmt", "use_tts"):
            if k in pipeline and type(pipeline[k]) is not bool:
                raise Invalid(f"pipeline.{k}")
    trace = d.get("trace_id")
    if trace is not None and (type(trace) is not str or len(trace) > 256):
        raise Invalid("trace_id")


def check_utterance(d: Any) -> dict[str, Any]:
    """messages.Utterance's constraints, by hand (the other session types are not sent)."""
    if type(d) is not dict or d.get("type") != "utterance":
        raise Invalid("type")
    _need_str(d, "session_id", 1, 256)
    _need_int(d, "utterance_index", 0)
    _need_str(d, "src_lang", 1, 64)
    _need_str(d, "tgt_lang", 1, 64)
    _need_str(d, "audio", 0, None)
    _need_str(d, "audio_format", 0, None)
    _need_int(d, "sample_rate", 1)
    _optional_checks(d)
    return d


def assign_dict(fields: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "job_assign", **kw}
    for key, value in fields.items():
        if key not in ASSIGN_OWN:
            frame[key] = value
    return frame


Decode = Callable[[bytes], Any]
Encode = Callable[[Any], bytes]


def codec_msgspec() -> tuple[Decode, Encode, dict[str, str]]:
    import msgspec

    from switchboard.errors import ProtocolError
    from switchboard.protocol import codec
    from switchboard.protocol.messages import Utterance

    def decode(frame: bytes) -> Any:
        try:
            msg = codec.decode_session(frame)
        except ProtocolError as exc:
            raise Invalid(str(exc)) from None
        if type(msg) is not Utterance:
            raise Invalid("type")
        return codec.raw_fields(frame)

    def encode(raw: Any) -> bytes:
        return codec.job_assign(raw, **ASSIGN_KW)

    return decode, encode, {"msgspec": msgspec.__version__}


def codec_json() -> tuple[Decode, Encode, dict[str, str]]:
    loads, dumps = json.loads, json.dumps

    def decode(frame: bytes) -> Any:
        _check_utf8(frame)
        try:
            return check_utterance(loads(frame))
        except ValueError as exc:  # JSONDecodeError, Invalid
            raise Invalid(str(exc)) from None

    def encode(d: Any) -> bytes:
        return dumps(assign_dict(d, ASSIGN_KW), separators=(",", ":")).encode()

    return decode, encode, {"json": json.__version__}


def codec_orjson() -> tuple[Decode, Encode, dict[str, str]]:
    import orjson

    loads, dumps = orjson.loads, orjson.dumps

    def decode(frame: bytes) -> Any:
        _check_utf8(frame)  # orjson refuses bad UTF-8 itself; kept for the same work
        try:
            return check_utterance(loads(frame))
        except ValueError as exc:  # JSONDecodeError, Invalid
            raise Invalid(str(exc)) from None

    def encode(d: Any) -> bytes:
        return dumps(assign_dict(d, ASSIGN_KW))

    return decode, encode, {"orjson": orjson.__version__}


def codec_pydantic() -> tuple[Decode, Encode, dict[str, str]]:
    from typing import Annotated, Literal

    import pydantic
    import pydantic_core
    from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

    Id = Annotated[str, Field(min_length=1, max_length=256)]
    Lang = Annotated[str, Field(min_length=1, max_length=64)]

    class M(BaseModel):
        model_config = ConfigDict(strict=True, frozen=True)  # extra fields ignored (default)

    class Pipeline(M):
        use_asr: bool = True
        use_nmt: bool = True
        use_tts: bool = True

    class SessionInit(M):
        type: Literal["session_init"]
        client_version: str
        platform: str
        src_lang: Lang
        tgt_lang: Lang
        trace_id: str | None = None
        token: str | None = None

    class Utterance(M):
        type: Literal["utterance"]
        session_id: Id
        utterance_index: Annotated[int, Field(ge=0)]
        src_lang: Lang
        tgt_lang: Lang
        audio: str
        audio_format: str
        sample_rate: Annotated[int, Field(ge=1)]
        manual_cut: bool | None = None
        pipeline: Pipeline | None = None
        trace_id: Annotated[str, Field(max_length=256)] | None = None

    class ClientHeartbeat(M):
        type: Literal["client_heartbeat"]
        session_id: Id
        timestamp: int | float

    class SessionClose(M):
        type: Literal["session_close"]
        session_id: Id
        reason: str

    inbound = Annotated[
        SessionInit | Utterance | ClientHeartbeat | SessionClose, Field(discriminator="type")
    ]
    validate = TypeAdapter(inbound).validate_json
    from_json, to_json = pydantic_core.from_json, pydantic_core.to_json

    def decode(frame: bytes) -> Any:
        try:
            msg = validate(frame)
        except pydantic.ValidationError as exc:
            raise Invalid(str(exc)) from None
        if type(msg) is not Utterance:
            raise Invalid("type")
        return from_json(frame)  # the opaque fields (msgspec: raw_fields, a second decode)

    def encode(d: Any) -> bytes:
        return to_json(assign_dict(d, ASSIGN_KW))

    return decode, encode, {"pydantic": pydantic.__version__}


CODEC_FACTORIES = {
    "msgspec": codec_msgspec,
    "json": codec_json,
    "orjson": codec_orjson,
    "pydantic": codec_pydantic,
}


def per_call_us(fn: Callable[[Any], Any], arg: Any, seconds: float, batches: int = 10) -> float:
    """CPU µs per call (thread CPU time, so time the shared machine preempts us is not
    counted): the best of ``batches`` batches of ~seconds/batches each."""
    clock = time.thread_time
    n = 200
    while True:
        t0 = clock()
        for _ in range(n):
            fn(arg)
        dt = clock() - t0
        if dt >= 0.02:
            break
        n *= 4
    n = max(n, int(n * seconds / batches / dt))
    best = float("inf")
    for _ in range(batches):
        t0 = clock()
        for _ in range(n):
            fn(arg)
        best = min(best, (clock() - t0) / n * 1e6)
    return best


def codec_worker(cand: str, seconds: float) -> dict[str, Any]:
    pinned = pin(SERVER_CPU)
    decode, encode, info = CODEC_FACTORIES[cand]()
    frame = utterance_frame()
    accepted = [b[:40] for b in bad_frames(frame) if _accepts(decode, b)]
    if accepted:
        raise SystemExit(f"{cand} accepted bad frames: {accepted}")
    out = encode(decode(frame))
    ref = json.loads(_reference_assign(frame))
    if json.loads(out) != ref:
        raise SystemExit(f"{cand}: job_assign differs from the project's")
    fields = decode(frame)
    res: dict[str, Any] = {
        "kind": "codec",
        "candidate": cand,
        "decode_us": per_call_us(decode, frame, seconds),
        "encode_us": per_call_us(encode, fields, seconds),
        "frame_bytes": len(frame),
        "assign_bytes": len(out),
        "pinned": pinned,
        "info": info,
    }
    if cand == "msgspec":  # where the project's decode time goes: typed decode vs raw_fields
        from switchboard.protocol import codec

        res["typed_us"] = per_call_us(codec.decode_session, frame, seconds)
        res["raw_us"] = per_call_us(codec.raw_fields, frame, seconds)
    return res


def _accepts(decode: Decode, frame: bytes) -> bool:
    try:
        decode(frame)
    except Invalid:
        return False
    return True


def _reference_assign(frame: bytes) -> bytes:
    from switchboard.protocol import codec

    return codec.job_assign(codec.raw_fields(frame), **ASSIGN_KW)


# =========================================================================== 2+3. echo servers


async def serve_aiohttp(ready: Callable[[int], None]) -> None:
    from aiohttp import WSMsgType, web

    from switchboard.server.sockets import ServerSocket

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = ServerSocket(max_frame_bytes=MAX_FRAME, close_timeout=5.0)
        await ws.prepare(request)
        async for msg in ws:  # decode_text=False: TEXT data is bytes
            if msg.type == WSMsgType.TEXT:
                await ws.send_frame(msg.data, WSMsgType.TEXT)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)  # as server/runner.py
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ready(runner.addresses[0][1])
    await asyncio.Event().wait()


async def serve_websockets(ready: Callable[[int], None], as_bytes: bool) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def echo_str(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async def echo_bytes(ws: ServerConnection) -> None:
        try:
            while True:
                data = await ws.recv(decode=False)
                await ws.send(data, text=True)
        except ConnectionClosed:
            pass

    handler = echo_bytes if as_bytes else echo_str
    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=MAX_FRAME) as server:
        ready(next(iter(server.sockets)).getsockname()[1])
        await asyncio.Event().wait()


def server_worker(config: str) -> None:
    impl, loop = config.split("/")
    pinned = pin(SERVER_CPU)

    def ready(port: int) -> None:
        print(json.dumps({"port": port, "pinned": pinned}), flush=True)

    if impl == "aiohttp":
        coro = serve_aiohttp(ready)
    else:
        coro = serve_websockets(ready, as_bytes=impl == "websockets-bytes")
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


# --------------------------------------------------------------------------- the client


def masked_text_frame(payload: bytes, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2)
    key = int.from_bytes((mask * (n // 4 + 1))[:n])
    return head + mask + (int.from_bytes(payload) ^ key).to_bytes(n)


def masked_close_frame(code: int = 1000) -> bytes:
    body = code.to_bytes(2)
    mask = b"\x11\x22\x33\x44"
    return bytes([0x88, 0x80 | 2]) + mask + bytes(b ^ m for b, m in zip(body, mask, strict=False))


class EchoClient(asyncio.Protocol):
    """One client WebSocket that sends ``frame`` again each time the echo of it comes back."""

    def __init__(self, frame: bytes, payload: bytes, stats: Stats) -> None:
        self.frame, self.payload, self.stats = frame, payload, stats
        self.buf = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(bytes(self.buf[:200]).decode()))
                return
            del self.buf[: end + 4]
            self.upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            opcode, n, head = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, head = int.from_bytes(buf[2:4]), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, head = int.from_bytes(buf[2:10]), 10
            if len(buf) < head + n:
                return
            payload = bytes(buf[head : head + n])
            del buf[: head + n]
            if opcode == 1:
                self.echoed(payload)
            elif opcode == 9 and self.transport is not None:  # ping -> pong
                self.transport.write(bytes([0x8A, 0x80 | n]) + b"\0\0\0\0" + payload)

    def echoed(self, payload: bytes) -> None:
        now = time.perf_counter_ns()
        st = self.stats
        if payload != self.payload:
            st.bad += 1
        st.count += 1
        if st.recording:
            st.rtts.append(now - self.sent_at)
        if st.running:
            self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lost += 1
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the upgrade"))


class Stats:
    def __init__(self) -> None:
        self.count = self.bad = self.lost = 0
        self.running = True
        self.recording = False
        self.rtts: list[int] = []


def server_cpu_ns(pid: int) -> int:
    """CPU time of all the server's threads, ns (schedstat: field 1 = time on CPU)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # thread gone
            total += int((task / "schedstat").read_text().split()[0])
    return total


async def client_run(port: int, server_pid: int, workload: str, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    payload = utterance_frame()  # 1.5 KB of JSON text
    frame = masked_text_frame(payload)
    stats = Stats()
    conns = 1 if workload == "rtt" else 64
    clients: list[EchoClient] = []
    for _ in range(conns):
        _, proto = await loop.create_connection(
            lambda: EchoClient(frame, payload, stats), "127.0.0.1", port
        )
        await proto.upgraded
        clients.append(proto)
    for c in clients:
        c.send()
    await asyncio.sleep(min(1.0, seconds / 3))  # warm-up
    count0, cpu0, own0 = stats.count, server_cpu_ns(server_pid), time.process_time()
    t0 = time.perf_counter()
    stats.recording = workload == "rtt"
    await asyncio.sleep(seconds)
    count1, cpu1, own1 = stats.count, server_cpu_ns(server_pid), time.process_time()
    t1 = time.perf_counter()
    stats.running = stats.recording = False
    await asyncio.sleep(0.05)
    close = masked_close_frame()
    for c in clients:
        if c.transport is not None:
            c.transport.write(close)
    await asyncio.sleep(0.1)
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    msgs = count1 - count0
    res: dict[str, Any] = {
        "messages": msgs,
        "msgs_per_s": msgs / (t1 - t0),
        "server_cpu_us_per_msg": (cpu1 - cpu0) / 1e3 / msgs,
        "server_cpu_pct": (cpu1 - cpu0) / 1e9 / (t1 - t0) * 100,
        "client_cpu_us_per_msg": (own1 - own0) * 1e6 / msgs,
        "bad_echoes": stats.bad,
        "connections_lost": stats.lost,
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


def run_codec(cand: str, seconds: float) -> dict[str, Any] | None:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "codec",
        "--candidate",
        cand,
        "--seconds",
        str(seconds),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        print(f"  codec {cand}: FAILED\n{done.stderr.strip()[-1500:]}", flush=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_echo(config: str, workload: str, seconds: float) -> dict[str, Any] | None:
    """A fresh server process and a fresh client process for one measurement."""
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(
            [sys.executable, __file__, "--worker", "server", "--candidate", config],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            return _drive(server, config, workload, seconds)
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.seek(0)
            if errors := log.read().strip():
                print(f"  {config}/{workload}: server stderr: {errors[-1500:]}", flush=True)


def _drive(
    server: subprocess.Popen[str], config: str, workload: str, seconds: float
) -> dict[str, Any] | None:
    assert server.stdout is not None
    hello = json.loads(server.stdout.readline() or "{}")
    if "port" not in hello:
        print(f"  {config}: server did not start", flush=True)
        return None
    port, pid = str(hello["port"]), str(server.pid)
    cmd = [sys.executable, __file__, "--worker", "client", "--workload", workload]
    cmd += ["--port", port, "--server-pid", pid, "--seconds", str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        print(f"  {config}/{workload}: FAILED\n{done.stderr.strip()[-1500:]}", flush=True)
        return None
    res: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    res["server_pinned"] = hello["pinned"]
    return res


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("aiohttp", "msgspec", "uvloop", "orjson", "pydantic", "websockets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="shorter windows (about a third)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--codecs", default=",".join(CODECS))
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
    if ns.worker == "codec":
        print(json.dumps(codec_worker(ns.candidate, ns.seconds)))
        return
    if ns.worker == "server":
        server_worker(ns.candidate)
        return
    if ns.worker == "client":
        print(json.dumps(client_worker(ns.port, ns.server_pid, ns.workload, ns.seconds)))
        return

    codec_s, rtt_s, tput_s = (0.25, 0.7, 1.5) if ns.quick else (0.6, 2.0, 5.0)
    codecs = [c for c in ns.codecs.split(",") if c]
    servers = [s for s in ns.servers.split(",") if s]
    loads = [w for w in ns.workloads.split(",") if w]
    print(f"loadavg at start: {loadavg()}; cpus {os.cpu_count()}; {versions()}", flush=True)
    runs: list[dict[str, Any]] = []
    for rep in range(ns.repeats):  # repeats outermost, so drift in machine load hits all alike
        print(f"rep {rep + 1}/{ns.repeats}: loadavg {loadavg()}", flush=True)
        for cand in codecs:
            if (res := run_codec(cand, codec_s)) is not None:
                res.update(rep=rep, loadavg=loadavg())
                runs.append(res)
                print(
                    f"  codec {cand:9s} decode {res['decode_us']:6.2f} µs  "
                    f"encode {res['encode_us']:6.2f} µs  {res['info']}",
                    flush=True,
                )
        for config in servers:
            for load in loads:
                res = run_echo(config, load, rtt_s if load == "rtt" else tput_s)
                if res is None:
                    continue
                res.update(kind="echo", candidate=config, workload=load, rep=rep, loadavg=loadavg())
                runs.append(res)
                print(
                    f"  {config:24s}{load:5s} {res['msgs_per_s']:8.0f} msg/s  server "
                    f"{res['server_cpu_us_per_msg']:6.1f} µs/msg ({res['server_cpu_pct']:3.0f}%)"
                    f"  p50 {res.get('p50_us', 0):6.1f} p99 {res.get('p99_us', 0):6.1f}  "
                    f"client {res['client_cpu_us_per_msg']:5.1f} µs/msg  bad "
                    f"{res['bad_echoes']}",
                    flush=True,
                )
    if ns.json:
        Path(ns.json).write_text(json.dumps({"versions": versions(), "runs": runs}, indent=1))
    report(runs, codecs, servers)


def report(runs: list[dict[str, Any]], codecs: list[str], servers: list[str]) -> None:
    def med(cand: str, key: str, workload: str | None = None) -> float:
        vals = [
            r[key]
            for r in runs
            if r["candidate"] == cand and key in r and r.get("workload") == workload
        ]
        return statistics.median(vals) if vals else float("nan")

    def span(cand: str, key: str, workload: str | None = None, fmt: str = ".1f") -> str:
        """``median (min–max)`` over the repeats."""
        vals = [
            r[key]
            for r in runs
            if r["candidate"] == cand and key in r and r.get("workload") == workload
        ]
        if not vals:
            return "-"
        lo, mid, hi = min(vals), statistics.median(vals), max(vals)
        return f"{mid:{fmt}} ({lo:{fmt}}–{hi:{fmt}})"

    print(
        "\nMedians of all repeats, (min–max) of the repeats\n\n| codec | decode+validate µs "
        "| job_assign encode µs | sum µs | job_assign bytes |\n|---|---|---|---|---|"
    )
    for c in codecs:
        d, e = med(c, "decode_us"), med(c, "encode_us")
        print(
            f"| {c} | {span(c, 'decode_us', fmt='.2f')} | {span(c, 'encode_us', fmt='.2f')} "
            f"| {d + e:.2f} | {med(c, 'assign_bytes'):.0f} |"
        )
    if "msgspec" in codecs:
        print(
            f"\nmsgspec decode = decode_session {med('msgspec', 'typed_us'):.2f} µs "
            f"+ raw_fields {med('msgspec', 'raw_us'):.2f} µs"
        )
    print(
        "\n| server | rtt p50 µs | rtt p99 µs | rtt server CPU µs/msg | tput msg/s "
        "| tput server CPU µs/msg | tput server CPU % | tput client CPU µs/msg |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for s in servers:
        print(
            f"| {s} | {med(s, 'p50_us', 'rtt'):.1f} | {med(s, 'p99_us', 'rtt'):.1f} "
            f"| {span(s, 'server_cpu_us_per_msg', 'rtt')} "
            f"| {span(s, 'msgs_per_s', 'tput', ',.0f')} "
            f"| {span(s, 'server_cpu_us_per_msg', 'tput')} "
            f"| {med(s, 'server_cpu_pct', 'tput'):.0f} "
            f"| {med(s, 'client_cpu_us_per_msg', 'tput'):.1f} |"
        )
    pinned = all(r.get("pinned", False) for r in runs if r["kind"] == "codec") and all(
        r.get("server_pinned", False) and r.get("client_pinned", False)
        for r in runs
        if r["kind"] == "echo"
    )
    bad = sum(r.get("bad_echoes", 0) for r in runs)
    print(
        f"\npinned server/codec to CPU {SERVER_CPU}, client to CPU {CLIENT_CPU}: {pinned}; "
        f"bad echoes: {bad}; loadavg at end: {loadavg()}"
    )


if __name__ == "__main__":
    main()
