"""The span seam of ``--otel``: one start and one end per utterance, and OpenTelemetry never
imported unless asked for (spans exported for real: tests/e2e/test_otel.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from switchboard.dispatch.jobs import Job
from switchboard.dispatch.spans import DROPPED
from tests.unit.fakes import Rig
from tests.unit.test_extras import _switchboard_without


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []

    def started(self, job: Job) -> None:
        self.events.append(("started", job.utterance_index, job.trace_id))

    def ended(self, job: Job, outcome: str) -> None:
        self.events.append(("ended", job.utterance_index, outcome))


async def test_each_utterance_gets_one_start_and_one_end() -> None:
    """Answered: ended with ``result``; left pending when its session closes: ``dropped``."""
    spans = Recorder()
    rig = Rig(spans=spans)
    await rig.start()
    node = await rig.add_node("a", [("zh", "en")], 1)
    session = rig.open_session("s")
    first = await rig.utter(session, 0)
    assert rig.answer(node, await asyncio.wait_for(node.assigned.get(), 1))
    await rig.utter(session, 1)
    rig.dispatcher.close_session(session.session)
    await rig.stop()
    assert spans.events == [
        ("started", 0, first.trace_id),
        ("ended", 0, "result"),
        ("started", 1, spans.events[2][2]),
        ("ended", 1, DROPPED),
    ]


def test_the_server_does_not_import_opentelemetry_without_the_flag() -> None:
    """Off, it costs nothing: building and serving imports no OpenTelemetry module."""
    code = (
        "import sys\n"
        "import switchboard.server.runner, switchboard.server.app, switchboard.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_otel_without_the_extra_names_the_install() -> None:
    """`serve --otel` where the [otel] extra is missing: exit 2 and the pip command to run."""
    done = _switchboard_without(("opentelemetry",), "serve", "--otel")
    assert done.returncode == 2, done.stderr
    assert "pip install 'switchboard-scheduler[otel]'" in done.stdout + done.stderr
