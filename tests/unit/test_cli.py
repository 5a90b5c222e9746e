"""The `switchboard` command: §6 flags reach Settings, bad settings exit 2 before the server."""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from switchboard import __version__
from switchboard.cli import main
from switchboard.config import Settings

RUNNER_MODULE = "switchboard.server.runner"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SWITCHBOARD_* from the developer's shell, and the root logger left as found."""
    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Stand in for switchboard.server.runner; records every run(settings) call."""
    calls: list[Settings] = []

    def run(settings: Settings, hooks: object = None) -> int:
        calls.append(settings)
        return 0

    module = types.ModuleType(RUNNER_MODULE)
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, RUNNER_MODULE, module)
    return calls


def test_public_host_without_tokens_exits_2_before_the_server(fake_runner: list[Settings]) -> None:
    """§6: a non-loopback --host without tokens exits with status 2 and says --insecure."""
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "switchboard: error:" in result.output
    assert "--insecure" in result.output
    assert fake_runner == []


def test_config_error_happens_before_importing_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error path does not need (or load) the server stack at all."""
    monkeypatch.delitem(sys.modules, RUNNER_MODULE, raising=False)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert RUNNER_MODULE not in sys.modules


def test_bad_job_timeout_exits_2(fake_runner: list[Settings]) -> None:
    result = CliRunner().invoke(main, ["serve", "--job-timeout", "abc"])
    assert result.exit_code == 2
    assert "--job-timeout" in result.output
    assert fake_runner == []


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_flags_reach_the_runner(fake_runner: list[Settings]) -> None:
    """Given flags become Settings; what was not given falls back to env, then defaults."""
    args = ["serve", "--port", "6001", "--job-timeout", "0.5", "--insecure", "--host", "0.0.0.0"]
    result = CliRunner().invoke(main, args, env={"SWITCHBOARD_MAX_ATTEMPTS": "5"})
    assert result.exit_code == 0, result.output
    (settings,) = fake_runner
    assert (settings.port, settings.job_timeout, settings.insecure) == (6001, 0.5, True)
    assert settings.max_attempts == 5
    assert settings.pending_timeout == Settings().pending_timeout


def test_unset_insecure_flag_does_not_hide_the_environment(fake_runner: list[Settings]) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--host", "0.0.0.0"], env={"SWITCHBOARD_INSECURE": "1"}
    )
    assert result.exit_code == 0, result.output
    assert fake_runner[0].insecure is True


def test_runner_status_is_the_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(RUNNER_MODULE)
    module.run = lambda settings, hooks=None: 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, RUNNER_MODULE, module)
    assert CliRunner().invoke(main, ["serve"]).exit_code == 3


def test_config_file_flag(tmp_path: Path, fake_runner: list[Settings]) -> None:
    path = tmp_path / "s.toml"
    path.write_text("port = 6123\nlog_level = 'debug'\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert fake_runner[0].port == 6123


def test_token_flag_value_is_not_logged(
    fake_runner: list[Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """The start-up log line uses the public view: the token is set but never written out."""
    secret = "cli-secret-Qx81-NOT-FOR-LOGS"
    caplog.set_level(logging.INFO, logger="switchboard")
    result = CliRunner().invoke(main, ["serve", "--node-token", secret])
    assert result.exit_code == 0, result.output
    assert fake_runner[0].node_token == secret
    assert "starting with" in caplog.text
    assert secret not in caplog.text and secret not in result.output


@pytest.mark.parametrize(("flag", "expected"), [("--no-streaming-asr", False), (None, True)])
def test_streaming_asr_switch(
    fake_runner: list[Settings], flag: str | None, expected: bool
) -> None:
    """--no-streaming-asr turns the job_assign streaming fields off; unset, it stays on."""
    args = ["serve"] if flag is None else ["serve", flag]
    result = CliRunner().invoke(main, args, env={})
    assert result.exit_code == 0, result.output
    assert fake_runner[0].streaming_asr is expected
