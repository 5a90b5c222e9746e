# examples/client.py: translate through a scheduler with the client SDK.
from __future__ import annotations

import asyncio
import sys

from switchboard.client import Session, SwitchboardError, sine_pcm16


async def main(url: str) -> None:
    audio = sine_pcm16(1.0)  # 1 s test tone; real clients send speech as mono 16-bit PCM
    async with Session.connect(url, src_lang="en", tgt_lang="de") as session:
        result = await session.translate(audio, sample_rate=16000)
        print(result.text_translated, "by", result.node_id, f"in {result.latency_s:.3f} s")

        # Several in flight at once: the answers still come back in the order sent.
        pending = [await session.send(audio, sample_rate=16000) for _ in range(3)]
        for handle in pending:
            try:
                print(handle.utterance_index, (await handle).text_translated)
            except SwitchboardError as exc:  # NoAvailableNode, JobTimeout, NodeError, ...
                print(handle.utterance_index, "failed:", exc)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:5010"))
