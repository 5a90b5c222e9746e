"""The seeded generator of the sample session trace (``bench/traces/sample.jsonl``).

``python -m switchboard.bench.tracegen --seed 7 --out bench/traces/sample.jsonl`` writes the
shipped file byte for byte (a test pins it).  The trace has the shape of a recording
(``trace.py``) of a small deployment — six pools, fifteen nodes — with five kinds of session:

- *steady* speakers: one pair, an utterance every few seconds, a clean close;
- *switchers*: a two-way conversation, the pair flipping direction or changing language;
- *bursty* speakers: 3–6 utterances 50–200 ms apart, answers overlapping, a few times;
- *idle* sessions: open for half a minute, saying at most one thing;
- *abandoned* sessions: the client vanishes with utterances still unanswered.

Answers follow a lognormal latency (median 0.45 s, p99 1.5 s) and leave in order, so a slow
answer holds back the faster ones behind it, as contract §2 requires.  About 1 in 80 answers
is a node error.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.bench import trace

Pair = tuple[str, str]
_Z99 = 2.3263478740408408

# pool id → (member node ids, directed pairs every member serves); ordered as generated pools
# are preferred: smaller language sets first.
POOLS: dict[int, tuple[tuple[str, ...], tuple[Pair, ...]]] = {
    1: (("node-de-1", "node-de-2", "node-de-3"), (("en", "de"), ("de", "en"))),
    2: (("node-fr-1", "node-fr-2", "node-fr-3"), (("en", "fr"), ("fr", "en"))),
    3: (("node-zh-1", "node-zh-2", "node-zh-3"), (("en", "zh-cn"), ("zh-cn", "en"))),
    4: (("node-ja-1", "node-ja-2"), (("en", "ja"), ("ja", "en"))),
    5: (("node-es-1", "node-es-2"), (("en", "es"), ("es", "en"))),
    6: (
        ("node-all-1", "node-all-2"),
        tuple((a, b) for a in ("de", "en", "es", "fr", "ja", "zh-cn") for b in ("en",) if a != b)
        + tuple(("en", b) for b in ("de", "es", "fr", "ja", "zh-cn")),
    ),
}
LANGS = ("de", "fr", "zh-cn", "ja", "es")
KINDS = (("steady", 40), ("switcher", 20), ("bursty", 15), ("idle", 15), ("abandoned", 10))


@dataclass(slots=True)
class _Gen:
    rng: random.Random
    serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    turn: Iterator[int] = field(default_factory=lambda: itertools.count())

    def latency(self) -> float:
        sigma = math.log(1.5 / 0.45) / _Z99
        return self.rng.lognormvariate(math.log(0.45), sigma)

    def node_for(self, pair: Pair) -> tuple[str, int]:
        for pool, (members, pairs) in POOLS.items():
            if pair in pairs:
                return members[next(self.turn) % len(members)], pool
        raise ValueError(f"no pool serves {pair}")


@dataclass(slots=True)
class _Script:
    """One session's timeline before answers are placed: sends, then how it ends."""

    session: str
    opened: float
    init: dict[str, object]
    sends: list[tuple[float, int, Pair]] = field(default_factory=list)
    end: float = 0.0
    how: str = "close"


def generate(*, seed: int = 7, sessions: int = 48, spread: float = 45.0) -> list[trace.Event]:
    gen = _Gen(random.Random(seed))
    timed: list[tuple[float, int, trace.Event]] = []
    order = itertools.count()
    for n in range(sessions):
        kind = _pick_kind(gen.rng)
        script = _SCRIPTS[kind](gen, f"s-TRACE{n:04d}", gen.rng.uniform(0, spread))
        for event in _events(gen, script):
            timed.append((getattr(event, "t", 0.0), next(order), event))
    timed.sort(key=lambda item: (item[0], item[1]))
    header = trace.Header(
        started_at="2025-01-01T00:00:00.000+00:00", source=f"tracegen seed={seed}"
    )
    live = trace.PoolsLive(t=0.0, live=sorted(POOLS))
    return [header, live, *(event for _, _, event in timed)]


def _pick_kind(rng: random.Random) -> str:
    names = [name for name, _ in KINDS]
    return rng.choices(names, weights=[w for _, w in KINDS])[0]


def _init(pair: Pair, rng: random.Random, **extra: object) -> dict[str, object]:
    init: dict[str, object] = {"client_version": "web-1.4", "platform": rng.choice(("web", "ios"))}
    return {**init, "src_lang": pair[0], "tgt_lang": pair[1], **extra}


def _random_pair(rng: random.Random) -> Pair:
    other = rng.choice(LANGS)
    return ("en", other) if rng.random() < 0.6 else (other, "en")


def _steady(gen: _Gen, session: str, opened: float) -> _Script:
    rng = gen.rng
    pair = _random_pair(rng)
    script = _Script(session, opened, _init(pair, rng))
    t, index = opened + rng.uniform(0.5, 2.0), rng.choice((0, 0, 1))
    for _ in range(rng.randint(5, 15)):
        script.sends.append((t, index, pair))
        t, index = t + rng.expovariate(1 / 3.0) + 0.3, index + 1
    script.end = t + rng.uniform(2.0, 5.0)
    return script


def _switcher(gen: _Gen, session: str, opened: float) -> _Script:
    rng = gen.rng
    a = rng.choice(LANGS)
    pair: Pair = ("en", a)
    script = _Script(session, opened, _init(pair, rng, mode="two_way_auto", lang_a="en", lang_b=a))
    t, index = opened + rng.uniform(0.5, 2.0), 0
    for _ in range(rng.randint(8, 16)):
        script.sends.append((t, index, pair))
        if rng.random() < 0.45:  # the other speaker answers, or the user changes language
            pair = (pair[1], pair[0]) if rng.random() < 0.8 else ("en", rng.choice(LANGS))
        t, index = t + rng.expovariate(1 / 2.5) + 0.2, index + 1
    script.end = t + rng.uniform(2.0, 4.0)
    return script


def _bursty(gen: _Gen, session: str, opened: float) -> _Script:
    rng = gen.rng
    pair = _random_pair(rng)
    script = _Script(session, opened, _init(pair, rng))
    t, index = opened + rng.uniform(0.5, 2.0), 0
    for _ in range(rng.randint(2, 4)):
        for _ in range(rng.randint(3, 6)):
            script.sends.append((t, index, pair))
            t, index = t + rng.uniform(0.05, 0.2), index + 1
        t += rng.uniform(5.0, 10.0)
    script.end = t
    return script


def _idle(gen: _Gen, session: str, opened: float) -> _Script:
    rng = gen.rng
    pair = _random_pair(rng)
    script = _Script(session, opened, _init(pair, rng))
    if rng.random() < 0.5:
        script.sends.append((opened + rng.uniform(5.0, 15.0), 0, pair))
    script.end = opened + rng.uniform(20.0, 40.0)
    return script


def _abandoned(gen: _Gen, session: str, opened: float) -> _Script:
    script = _steady(gen, session, opened)
    rng = gen.rng
    del script.sends[rng.randint(3, 8) :]
    script.end = script.sends[-1][0] + rng.uniform(0.1, 0.3)  # gone before the last answers
    script.how = "disconnect"
    return script


_SCRIPTS: dict[str, Callable[[_Gen, str, float], _Script]] = {
    "steady": _steady,
    "switcher": _switcher,
    "bursty": _bursty,
    "idle": _idle,
    "abandoned": _abandoned,
}


def _events(gen: _Gen, script: _Script) -> Iterator[trace.Event]:
    session = script.session
    yield trace.Opened(t=round(script.opened, 3), session=session, init=script.init)
    last_answer = script.opened
    gone = False  # answers leave in order: once one is too late, so are all after it
    for t, index, pair in script.sends:
        job_id = f"job-{session[2:]}-{next(gen.serial):05d}"
        yield trace.Accepted(
            t=round(t, 3), session=session, index=index, src=pair[0], tgt=pair[1], job_id=job_id
        )
        done = max(last_answer + 0.001, t + gen.latency())
        gone = gone or (script.how == "disconnect" and done >= script.end)
        if gone:
            continue  # the client left before this answer
        last_answer = done
        yield _answer(gen, session, job_id, index, pair, done)
    end = max(script.end, last_answer + 0.01) if script.how == "close" else script.end
    yield trace.Closed(t=round(end, 3), session=session, how=script.how)


def _answer(
    gen: _Gen, session: str, job_id: str, index: int, pair: Pair, t: float
) -> trace.Answered:
    node, pool = gen.node_for(pair)
    failed = gen.rng.random() < 1 / 80
    return trace.Answered(
        t=round(t, 3),
        session=session,
        kind="error" if failed else "result",
        job_id=job_id,
        index=index,
        code="ASR_FAILED" if failed else None,
        node_id=node,
        pools=[pool],
        pairs=sorted(POOLS[pool][1]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sessions", type=int, default=48)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    trace.write_trace(args.out, generate(seed=args.seed, sessions=args.sessions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
