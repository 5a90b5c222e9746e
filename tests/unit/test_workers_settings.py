"""``--workers``: read from flag, environment and TOML alike; refused on the embedded store;
and a forked worker draws ids of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from switchboard.config import load_settings
from switchboard.errors import ConfigError
from switchboard.protocol import ids

REDIS = {"redis_url": "redis://127.0.0.1:6379/0"}


def test_workers_from_each_source(tmp_path: Path) -> None:
    toml = tmp_path / "sb.toml"
    toml.write_text('workers = 3\nredis_url = "redis://127.0.0.1:6379/0"\n')
    assert load_settings({}, environ={}, config_path=str(toml)).workers == 3
    env = {"SWITCHBOARD_WORKERS": "4", "SWITCHBOARD_REDIS_URL": REDIS["redis_url"]}
    assert load_settings({}, environ=env).workers == 4
    assert load_settings({"workers": "2", **REDIS}, environ=env).workers == 2
    assert load_settings({}, environ={}).workers == 1


def test_more_than_one_worker_needs_redis() -> None:
    with pytest.raises(ConfigError, match="--workers 2 needs the Redis store"):
        load_settings({"workers": "2"}, environ={})
    with pytest.raises(ConfigError, match="--workers"):
        load_settings({"workers": "0", **REDIS}, environ={})


def test_a_forked_process_draws_its_own_id_prefixes() -> None:
    """Workers are forked: without a fresh draw their job ids (the holders of Redis leases)
    would repeat their siblings'."""
    parent_job, parent_trace = ids.job_id(), ids.trace_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, f"{ids.job_id()} {ids.trace_id()}".encode())
        os._exit(0)
    os.close(write)
    child_job, child_trace = os.read(read, 200).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_job[:12] != parent_job[:12]  # "job-" and the 8-digit prefix
    assert child_trace[:23] != parent_trace[:23]  # the random head
