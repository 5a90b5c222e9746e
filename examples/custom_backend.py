# examples/custom_backend.py: a node with your own model behind it.
from __future__ import annotations

import sys

from switchboard.agent import AgentConfig, Backend, Job, PartialSink, Result, run_agent


class ShoutingBackend(Backend):
    """Not a model: it describes the audio in capitals. Put your ASR/MT/TTS calls in run()."""

    name = "shouting"
    streams_partials = True

    async def run(self, job: Job, partials: PartialSink) -> Result:
        seconds = len(job.audio) / 2 / job.sample_rate  # pcm16: two bytes per sample
        heard = f"{seconds:.1f} seconds of {job.src_lang}"
        await partials.emit(heard, is_final=True)  # becomes asr_partial for the client
        return Result(text_asr=heard, text_translated=f"[{job.tgt_lang}] {heard.upper()}")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:5010"
    config = AgentConfig(url=url, pairs=(("en", "de"), ("en", "fr")), max_concurrency=2)
    status = run_agent(  # runs until SIGTERM or Ctrl-C, then drains and exits
        config,
        ShoutingBackend(),
        on_registered=lambda node_id: print("registered", node_id, flush=True),
    )
    sys.exit(status)
