"""`switchboard translate` as a process against a live scheduler and node."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from switchboard.agent import Backend, Job, PartialSink, Result
from switchboard.client import sine_pcm16, write_wav
from tests.agent.support import ready_agent, scaled, scheduler_args
from tests.e2e.harness import ServerProcess, clean_env


class Echo(Backend):
    """Answers with what it received, so the test can check the bytes and the rate sent."""

    name = "echo"

    async def run(self, job: Job, partials: PartialSink) -> Result:
        digest = hashlib.sha256(job.audio).hexdigest()[:16]
        return Result(
            text_asr=f"{len(job.audio)} bytes at {job.sample_rate} Hz as {job.audio_format}",
            text_translated=f"[{job.tgt_lang}] {digest}",
        )


async def translate(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard", "translate", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), scaled(20))
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# One scheduler and node for the module: each test only runs the command against them.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    args, heartbeat = scheduler_args(pending_timeout=0.3)
    log = tmp_path_factory.mktemp("translate") / "scheduler.log"
    server = ServerProcess(args, log_path=log, heartbeat_interval=heartbeat)
    await asyncio.to_thread(server.start)
    try:
        async with contextlib.AsyncExitStack() as stack:
            await ready_agent(stack, server, Echo(), node_id="echo-1")
            yield server
    finally:
        await asyncio.to_thread(server.terminate)


def _digest(pcm: bytes) -> str:
    return hashlib.sha256(pcm).hexdigest()[:16]


async def test_generated_tone(live: ServerProcess) -> None:
    """--generate-seconds sends a 16 kHz sine; the answer is printed with node and latency."""
    status, out, err = await translate("--generate-seconds", "1.5", "--url", live.ws_url)
    assert status == 0, err
    pcm = sine_pcm16(1.5)
    assert f"text_asr:        {len(pcm)} bytes at 16000 Hz as pcm16" in out
    assert f"text_translated: [de] {_digest(pcm)}" in out
    assert "node: echo-1" in out and "latency:" in out


async def test_wav_and_raw_files(live: ServerProcess, tmp_path: Path) -> None:
    """A WAV file is sent as its PCM frames at its own rate; raw PCM needs --sample-rate."""
    pcm = sine_pcm16(0.5, sample_rate=8000, frequency=300)
    write_wav(tmp_path / "speech.wav", pcm, sample_rate=8000)
    status, out, err = await translate(str(tmp_path / "speech.wav"), "--url", live.url)
    assert status == 0, err
    assert f"{len(pcm)} bytes at 8000 Hz" in out and _digest(pcm) in out

    (tmp_path / "speech.pcm").write_bytes(pcm)
    status, out, err = await translate(
        str(tmp_path / "speech.pcm"), "--raw", "--sample-rate", "22050", "--url", live.url
    )
    assert status == 0, err
    assert f"{len(pcm)} bytes at 22050 Hz" in out


async def test_errors_are_reported_with_their_code(live: ServerProcess, tmp_path: Path) -> None:
    """No node for the pair: exit 1 with the error code; unusable audio: exit 2."""
    status, out, err = await translate(
        "--generate-seconds", "0.2", "--tgt", "fr", "--url", live.ws_url
    )
    assert status == 1 and out == ""
    assert "NO_AVAILABLE_NODE" in err
    status, _, err = await translate(str(tmp_path / "missing.wav"), "--url", live.ws_url)
    assert status == 2 and "cannot read WAV file" in err


async def test_stream_sends_chunks_and_prints_an_answer_per_utterance(live: ServerProcess) -> None:
    """--stream cuts 2.5 s of tone into utterances of --utterance-seconds, each sent as
    --chunk-ms chunks and ended with a final chunk; one answer is printed per utterance, in
    order, with exactly that utterance's audio."""
    status, out, err = await translate(
        "--generate-seconds", "2.5", "--stream", "--utterance-seconds", "1",
        "--chunk-ms", "100", "--url", live.ws_url,
    )  # fmt: skip
    assert status == 0, err
    pcm = sine_pcm16(2.5)
    pieces = [pcm[:32000], pcm[32000:64000], pcm[64000:]]
    for index, piece in enumerate(pieces):
        assert f"utterance {index}\n" in out, out
        assert f"{len(piece)} bytes at 16000 Hz as pcm16" in out
        assert _digest(piece) in out
    assert out.index("utterance 0") < out.index("utterance 1") < out.index("utterance 2")
