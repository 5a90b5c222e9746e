"""Fixtures of the security suite: a real ``switchboard serve`` per test, with the test's flags.

``serve(*flags, env=None)`` starts one and returns it (``tests/e2e/harness.py``'s
``ServerProcess``); every server is stopped after the test.  Waits use the suite's timeout
scale.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Protocol

import pytest

from tests.e2e import harness
from tests.e2e.harness import ServerProcess


class Serve(Protocol):
    def __call__(
        self, *flags: str, env: Mapping[str, str] | None = None, admin_token: str | None = None
    ) -> Awaitable[ServerProcess]: ...


@pytest.fixture(autouse=True)
def _scale_waits(timeout_scale: float) -> None:
    harness.SCALE = timeout_scale


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    started: list[ServerProcess] = []

    async def start(
        *flags: str, env: Mapping[str, str] | None = None, admin_token: str | None = None
    ) -> ServerProcess:
        server = ServerProcess(
            list(flags),
            log_path=tmp_path / f"serve-{len(started)}.log",
            admin_token=admin_token,
            env=env,
        )
        started.append(server)
        await asyncio.to_thread(server.start)
        return server

    yield start
    await asyncio.gather(*(asyncio.to_thread(s.terminate) for s in started))
