"""Every copy-paste example of the README runs: the Python blocks are the files in examples/,
the commands of "Connecting a node" and "Connecting a client" are run as written (with the
test scheduler's URL in place of the default one), and the Quick start's ./scripts/demo is
what tests/demo/test_demo.py runs."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import sys
from pathlib import Path

from switchboard.client import sine_pcm16, write_wav
from tests.agent.support import SchedulerFactory, scaled
from tests.e2e.harness import clean_env

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"```(?P<lang>\w+)\n(?P<body>.*?)```", re.DOTALL)
DEFAULT_URL = "ws://127.0.0.1:5010"


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return [m["body"] for m in BLOCK.finditer(text) if m["lang"] == lang]


def _commands(title: str, url: str) -> list[list[str]]:
    """The shell lines of a section, runnable here: the venv's programs become this
    interpreter, the default scheduler URL the test's."""
    commands = []
    for block in _blocks(_section(title), "sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            program = {
                ".venv/bin/switchboard": [sys.executable, "-m", "switchboard"],
                ".venv/bin/python": [sys.executable],
            }[words[0]]
            commands.append(program + [url if w == DEFAULT_URL else w for w in words[1:]])
    return commands


def test_python_blocks_are_the_example_files() -> None:
    """Each Python block names its file on its first line and equals it byte for byte."""
    seen = {}
    for body in _blocks(README, "python"):
        match = re.match(r"# (examples/\S+\.py):", body)
        assert match is not None, f"a README Python block names no example file:\n{body}"
        seen[match[1]] = body
    assert set(seen) == {"examples/custom_backend.py", "examples/client.py"}
    for path, body in seen.items():
        assert (ROOT / path).read_text() == body, f"README block differs from {path}"


async def _spawn(command: list[str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_env(),
    )


async def _until_registered(proc: asyncio.subprocess.Process, command: list[str]) -> None:
    assert proc.stdout is not None
    seen = []
    async with asyncio.timeout(scaled(15)):
        while line := (await proc.stdout.readline()).decode():
            seen.append(line)
            if "registered" in line:
                return
    raise AssertionError(f"{command} never registered: {''.join(seen)}")


async def test_node_and_client_commands_run(
    scheduler_factory: SchedulerFactory, tmp_path: Path
) -> None:
    """The three node commands register with a live scheduler; the client commands then
    get translations; every node exits 0 on SIGTERM."""
    server = await scheduler_factory()
    node_commands = _commands("Connecting a node", server.ws_url)
    client_commands = _commands("Connecting a client", server.ws_url)
    assert len(node_commands) == 3 and len(client_commands) == 3
    write_wav(tmp_path / "speech.wav", sine_pcm16(0.5), sample_rate=16000)
    nodes = []
    try:
        for command in node_commands:  # from the repository root: examples/ is importable
            nodes.append(proc := await _spawn(command, ROOT))
            await _until_registered(proc, command)
        for command in client_commands:  # from elsewhere, where speech.wav is
            command = [str(ROOT / w) if (ROOT / w).is_file() else w for w in command]
            proc = await _spawn(command, tmp_path)
            out, _ = await asyncio.wait_for(proc.communicate(), scaled(20))
            text = out.decode()
            assert proc.returncode == 0, f"{command}:\n{text}"
            assert "[de] " in text and "failed" not in text, f"{command}:\n{text}"
    finally:
        for proc in nodes:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        statuses = [await asyncio.wait_for(p.wait(), scaled(15)) for p in nodes]
    assert statuses == [0, 0, 0]


def test_quick_start_starts_with_the_demo_script() -> None:
    """The Quick start's first command is scripts/demo, which tests/demo/test_demo.py runs."""
    first = _blocks(_section("Quick start"), "sh")[0].splitlines()[0]
    assert first.split()[0] == "./scripts/demo"
    assert (ROOT / "scripts/demo").stat().st_mode & 0o111, "scripts/demo must be executable"
