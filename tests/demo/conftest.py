"""Fixtures shared by the agent, client and demo tests (defined in tests/agent/support.py)."""

from tests.agent.support import (  # noqa: F401 - fixtures and the report hook, by import
    _harness_scale,
    agent_process,
    pytest_runtest_makereport,
    scheduler_factory,
    store_flags,
)
