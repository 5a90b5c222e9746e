"""The hardening settings (--ping-interval, --max-frames-per-second, --frame-burst,
--max-http-requests-per-address) read like every other setting: flag > environment > file >
default, with 0 turning each limit off and nonsense refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.config import Settings, load_settings
from switchboard.errors import ConfigError


def test_defaults() -> None:
    settings = Settings()
    assert settings.ping_interval == 20.0
    assert (settings.max_frames_per_second, settings.frame_burst) == (1000, 2000)
    assert settings.max_http_requests_per_address == 32


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("ping_interval = 5\nmax_frames_per_second = 50\nframe_burst = 7\n")
    settings = load_settings(
        {"ping_interval": "0.5"},
        environ={"SWITCHBOARD_MAX_FRAMES_PER_SECOND": "60"},
        config_path=str(config),
    )
    assert settings.ping_interval == 0.5
    assert settings.max_frames_per_second == 60
    assert settings.frame_burst == 7


def test_zero_turns_each_limit_off() -> None:
    settings = load_settings(
        {"ping_interval": "0", "max_frames_per_second": "0", "max_http_requests_per_address": "0"},
        environ={},
    )
    assert settings.ping_interval == 0
    assert settings.max_frames_per_second == 0
    assert settings.max_http_requests_per_address == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ping_interval", "-1"),
        ("max_frames_per_second", "-5"),
        ("frame_burst", "0"),
        ("max_http_requests_per_address", "lots"),
    ],
)
def test_nonsense_is_refused_with_the_flag_named(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match="--" + key.replace("_", "-")):
        load_settings({key: value}, environ={})
