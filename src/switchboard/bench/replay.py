"""``switchboard replay FILE --speed K`` (E3): replay recorded sessions and check them.

Three views are checked with the same rules (``consistency.py``):

1. the input trace itself, as recorded;
2. what the replaying clients received (nodes' pools and pairs from ``GET /api/v1/nodes``);
3. with a scheduler of its own (no ``--url``): the trace that scheduler recorded of the replay
   (``switchboard serve --record``), i.e. the server's own account.

The replay keeps each session's pacing divided by ``speed``: it opens the session with the
recorded ``session_init``, sends each accepted utterance (same index, same pair) at its time,
and ends the session as it ended — a clean ``session_close`` once its answers are in, or a
silent disconnect for an abandoned client.  Its fake nodes cover every pair of the trace twice
(specialist pools for each language pair, and a generalist pool), with enough slots that a
preferred pool never fills, so any pool hop is a broken binding, not a spill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.agent.pseudo import LatencyModel
from switchboard.bench import trace
from switchboard.bench.consistency import Violation, check
from switchboard.bench.fakes import Answer, FakeNode, FakeSession, Tally, audio_b64
from switchboard.bench.orchestrate import ServerProc
from switchboard.server.runner import loop_factory

Pair = tuple[str, str]
SLOTS = 64


@dataclass(slots=True)
class _Action:
    t: float
    kind: str  # "send", "close", "disconnect" or "shutdown"
    index: int = 0
    pair: Pair = ("", "")


@dataclass(slots=True)
class SessionScript:
    session: str
    opened: float
    init: dict[str, object]
    actions: list[_Action] = field(default_factory=list)

    @property
    def pair(self) -> Pair:
        return (str(self.init.get("src_lang", "en")), str(self.init.get("tgt_lang", "de")))


def scripts_of(events: Sequence[trace.Event]) -> list[SessionScript]:
    """Each recorded session as a script: when it opened, what it sent, how it ended."""
    scripts: dict[str, SessionScript] = {}
    for ev in events:
        if isinstance(ev, trace.Opened):
            scripts[ev.session] = SessionScript(ev.session, ev.t, dict(ev.init))
        elif isinstance(ev, trace.Accepted) and ev.session in scripts:
            scripts[ev.session].actions.append(_Action(ev.t, "send", ev.index, (ev.src, ev.tgt)))
        elif isinstance(ev, trace.Closed) and ev.session in scripts:
            scripts[ev.session].actions.append(_Action(ev.t, ev.how))
    return sorted(scripts.values(), key=lambda s: s.opened)


def nodes_for(scripts: Sequence[SessionScript]) -> list[tuple[str, tuple[Pair, ...]]]:
    """Two specialist nodes per language pair of the trace, two generalists serving all."""
    directed = sorted({a.pair for s in scripts for a in s.actions if a.kind == "send"})
    directed += [s.pair for s in scripts if s.pair not in directed]
    language_pairs = sorted({tuple(sorted(p)) for p in directed})
    nodes: list[tuple[str, tuple[Pair, ...]]] = []
    for a, b in language_pairs:
        for n in (1, 2):
            nodes.append((f"replay-{a}-{b}-{n}", ((a, b), (b, a))))
    everything = tuple(sorted({p for a, b in language_pairs for p in ((a, b), (b, a))}))
    nodes += [(f"replay-all-{n}", everything) for n in (1, 2)]
    return nodes


# --- driving a scheduler -----------------------------------------------------------------------


@dataclass(slots=True)
class ClientLog:
    session: str
    sent: list[tuple[float, int, Pair]] = field(default_factory=list)
    client: FakeSession | None = None
    ended: tuple[float, str] | None = None
    failure: str | None = None


async def drive(
    host: str, port: int, scripts: Sequence[SessionScript], *, speed: float
) -> tuple[list[ClientLog], dict[str, dict[str, object]], float]:
    """Replay every script; returns the client logs, the nodes as the scheduler listed them,
    and the replay's start on ``perf_counter``."""
    tally = Tally()
    rng = random.Random(1)
    nodes = [
        FakeNode(
            node_id,
            pairs,
            max_concurrency=SLOTS,
            latency=LatencyModel(0.02, 0.08),
            tally=tally,
            rng=random.Random(rng.random()),
        )
        for node_id, pairs in nodes_for(scripts)
    ]
    await asyncio.gather(*(n.connect(host, port) for n in nodes))
    for node in nodes:
        node.heartbeat()  # registering → ready (contract §1 "Status")
    listing = await _nodes_listing(host, port, len(nodes))
    audio = audio_b64(256)
    t0 = time.perf_counter()
    logs = await asyncio.gather(*(_play(s, host, port, t0, speed, tally, audio) for s in scripts))
    for node in nodes:
        node.leave()
    return list(logs), listing, t0


async def _nodes_listing(host: str, port: int, expected: int) -> dict[str, dict[str, object]]:
    """``GET /api/v1/nodes`` once every node is ready (pools and pairs of each node)."""
    url = f"http://{host}:{port}/api/v1/nodes"
    deadline = time.monotonic() + 10
    while True:
        body = await asyncio.to_thread(_get_json, url)
        listing = {str(n["node_id"]): n for n in body if isinstance(n, dict)}
        if sum(1 for n in listing.values() if n.get("status") == "ready") >= expected:
            return listing
        if time.monotonic() > deadline:
            raise TimeoutError("replay nodes never became ready")
        await asyncio.sleep(0.05)


def _get_json(url: str) -> list[object]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: list[object] = json.loads(reply.read())
        return body


async def _play(
    script: SessionScript,
    host: str,
    port: int,
    t0: float,
    speed: float,
    tally: Tally,
    audio: bytes,
) -> ClientLog:
    log = ClientLog(script.session)
    await _sleep_until(t0 + script.opened / speed)
    client = FakeSession(script.pair, tally=tally, audio=audio, log_answers=True)
    try:
        await client.connect(host, port, init=script.init)
    except (OSError, TimeoutError, ConnectionError) as exc:
        log.failure = f"{type(exc).__name__}: {exc}"
        return log
    log.client = client
    for action in script.actions:
        await _sleep_until(t0 + action.t / speed)
        if action.kind == "send":
            client.send(action.index, action.pair)
            log.sent.append((time.perf_counter() - t0, action.index, action.pair))
            continue
        await _end(client, action.kind)
        log.ended = (time.perf_counter() - t0, action.kind)
        break
    else:
        await _end(client, "close")
        log.ended = (time.perf_counter() - t0, "close")
    return log


async def _end(client: FakeSession, how: str) -> None:
    if how == "disconnect":
        client.abandon()
        return
    # The recorded session closed after its answers: wait for them (bounded), then close.
    answered = asyncio.Event()
    client.on_answer = lambda session: None if session.pending else answered.set()
    if client.pending:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), 15)
    client.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client.closed.wait(), 5)


async def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


# --- the client's view as a trace --------------------------------------------------------------


def client_events(
    logs: Sequence[ClientLog], listing: dict[str, dict[str, object]], t0: float
) -> list[trace.Event]:
    """What the replaying clients saw, as trace events (checked like any trace)."""
    timed: list[tuple[float, int, trace.Event]] = []
    for log in logs:
        if log.client is None or log.client.answers is None:
            continue
        timed += _session_events(log, log.client, listing, t0)
    timed.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in timed]


def _session_events(
    log: ClientLog, client: FakeSession, listing: dict[str, dict[str, object]], t0: float
) -> list[tuple[float, int, trace.Event]]:
    answers = client.answers or []
    first_answer: dict[int, str | None] = {}
    for answer in answers:
        first_answer.setdefault(answer.index, answer.job_id)
    rejected = {a.index for a in answers if a.kind == "rejected"}
    out: list[tuple[float, int, trace.Event]] = []
    sid = log.session
    for t, index, pair in log.sent:
        if index in rejected:
            continue
        job_id = first_answer.get(index) or f"unanswered-{index}"
        event = trace.Accepted(
            t=t, session=sid, index=index, src=pair[0], tgt=pair[1], job_id=job_id
        )
        out.append((t, 0, event))
    for answer in answers:
        t = answer.at - t0
        if answer.kind == "rejected":
            out.append(
                (t, 1, trace.Rejected(t=t, session=sid, code=answer.code or "", index=answer.index))
            )
            continue
        node = listing.get(answer.node_id or "", {})
        out.append((t, 1, _answered(sid, answer.kind, answer, node, t)))
    if log.ended is not None:
        out.append((log.ended[0], 2, trace.Closed(t=log.ended[0], session=sid, how=log.ended[1])))
    return out


def _answered(
    sid: str, kind: str, answer: Answer, node: dict[str, object], t: float
) -> trace.Answered:
    pools = node.get("pools")
    pairs = node.get("language_pairs")
    return trace.Answered(
        t=t,
        session=sid,
        kind=kind,
        job_id=answer.job_id or f"unanswered-{answer.index}",
        index=answer.index,
        code=answer.code,
        node_id=answer.node_id,
        pools=[int(p) for p in pools] if isinstance(pools, list) else None,
        pairs=[(str(p["src"]), str(p["tgt"])) for p in pairs] if isinstance(pairs, list) else None,
    )


# --- one replay, end to end --------------------------------------------------------------------


@dataclass(slots=True)
class ReplayReport:
    input: list[Violation]
    client: list[Violation]
    server: list[Violation] | None
    sessions: int
    nodes: int
    utterances: int
    answered: int
    failures: Counter[str]
    duration_s: float

    @property
    def violations(self) -> int:
        return len(self.input) + len(self.client) + len(self.server or [])


def replay_against(
    host: str, port: int, events: Sequence[trace.Event], *, speed: float
) -> tuple[list[Violation], int, int, Counter[str], float]:
    """Run the replay in a fresh event loop; client-side violations and counts."""
    scripts = scripts_of(events)
    start = time.perf_counter()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        logs, listing, t0 = runner.run(drive(host, port, scripts, speed=speed))
    duration = time.perf_counter() - start
    failures = Counter(log.failure for log in logs if log.failure)
    utterances = sum(len(log.sent) for log in logs)
    answered = sum(len(log.client.answers or []) for log in logs if log.client is not None)
    violations = check(client_events(logs, listing, t0))
    return (
        violations,
        utterances,
        answered,
        Counter({str(k): v for k, v in failures.items()}),
        duration,
    )


def run_replay(
    path: str | Path,
    *,
    speed: float,
    workdir: Path,
    url: str | None = None,
    server_flags: dict[str, object] | None = None,
) -> ReplayReport:
    """Check the trace, replay it, check the replay (module docstring)."""
    events = trace.read_trace(path)
    found_in_input = check(events)
    if url is not None:
        host, port = _host_port(url)
        client, utterances, answered, failures, duration = replay_against(
            host, port, events, speed=speed
        )
        server = None
    else:
        record = workdir / "replay-recorded.jsonl"
        record.unlink(missing_ok=True)
        # Every replayed peer connects from 127.0.0.1: lift the per-address guard.
        base = {"log_level": "warning", "heartbeat_interval": 30, "max_connections_per_address": 0}
        flags = {**base, **(server_flags or {})}
        proc = ServerProc({**flags, "record": record}, workdir, "replay", cli=True)
        proc.start()
        try:
            client, utterances, answered, failures, duration = replay_against(
                proc.host, proc.port, events, speed=speed
            )
        finally:
            proc.stop()
        server = check(trace.read_trace(record))
    sessions = sum(1 for ev in events if isinstance(ev, trace.Opened))
    nodes = len(nodes_for(scripts_of(events)))
    return ReplayReport(
        found_in_input, client, server, sessions, nodes, utterances, answered, failures, duration
    )


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url if "://" in url else f"ws://{url}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"expected ws://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port
