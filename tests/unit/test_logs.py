"""Log formats (protocol.md §7 "Logs"): the fields a line carries, and no token in any line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard import logs
from switchboard.config import load_settings
from switchboard.errors import ConfigError

IDS = {"trace_id": "t-1", "session_id": "s-1", "job_id": "j-1", "node_id": "n-1"}


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("switchboard.jobs", logging.DEBUG, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_the_base_fields_and_the_ids_it_was_given() -> None:
    line = json.loads(logs.JsonFormatter().format(_record("job %s", "accepted", **IDS)))
    assert line["level"] == "debug" and line["logger"] == "switchboard.jobs"
    assert line["msg"] == "job accepted"
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert {key: line[key] for key in IDS} == IDS


def test_json_line_leaves_out_ids_that_do_not_apply() -> None:
    line = json.loads(logs.JsonFormatter().format(_record("hello", node_id=None)))
    assert set(line) == {"ts", "level", "logger", "msg"}


def test_json_line_carries_a_traceback_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, exc_info=sys.exc_info()
        )
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text
    assert "Traceback (most recent call last)" in json.loads(text)["exc"]


def test_text_line_appends_the_ids_as_key_value_pairs() -> None:
    text = logs.TextFormatter().format(_record("job %s", "assigned", **IDS))
    assert text.endswith("job assigned trace_id=t-1 session_id=s-1 job_id=j-1 node_id=n-1")


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/v1/nodes?token=SECRET-1&x=1",
        'frame {"type": "session_init", "token": "SECRET-1"}',
        "header Authorization: Bearer SECRET-1",
        "redis://user:SECRET-1@127.0.0.1:6379/0",
    ],
)
def test_redact_hides_what_looks_like_a_token(line: str) -> None:
    assert "SECRET-1" not in logs.redact(line)
    assert "***" in logs.redact(line)


def test_redact_leaves_an_ordinary_line_alone() -> None:
    line = "job answered trace_id=abc node_id=n-1"
    assert logs.redact(line) is line


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    jobs = logging.getLogger(logs.JOBS_LOGGER)
    handlers, level, jobs_level = list(root.handlers), root.level, jobs.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    jobs.setLevel(jobs_level)


@pytest.mark.usefixtures("restored")
def test_log_jobs_turns_on_the_job_steps_alone() -> None:
    """--log-jobs: job steps at DEBUG while every other logger stays at --log-level."""
    out = io.StringIO()
    logs.configure(level="info", fmt="json", jobs=True, stream=out)
    logs.configure(level="info", fmt="json", jobs=True, stream=out)  # replaces, not adds
    logging.getLogger("switchboard.jobs").debug("job accepted", extra=IDS)
    logging.getLogger("switchboard.server").debug("not wanted")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["job accepted"]


def test_log_settings_come_from_flag_environment_and_file(tmp_path: Path) -> None:
    """--log-format, --log-jobs and --otel read from a flag, SWITCHBOARD_* and the TOML file
    alike, a flag first; a format we do not write is refused by name."""
    path = tmp_path / "s.toml"
    path.write_text('log_format = "json"\nlog_jobs = true\notel = true\n')
    from_file = load_settings({}, environ={}, config_path=str(path))
    assert (from_file.log_format, from_file.log_jobs, from_file.otel) == ("json", True, True)
    env = {"SWITCHBOARD_LOG_FORMAT": "JSON", "SWITCHBOARD_LOG_JOBS": "1"}
    from_env = load_settings({}, environ=env)
    assert (from_env.log_format, from_env.log_jobs, from_env.otel) == ("json", True, False)
    flagged = load_settings({"log_format": "text"}, environ=env)
    assert flagged.log_format == "text"
    assert load_settings({}, environ={}).log_format == "text"
    with pytest.raises(ConfigError, match="--log-format"):
        load_settings({"log_format": "xml"}, environ={})
