"""The streaming settings (--pause-ms, --max-utterance-ms, --max-utterance-bytes) read like
every other setting: flag > environment > file > default, nonsense refused with the flag named."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.config import Settings, load_settings
from switchboard.errors import ConfigError


def test_defaults_are_lingua_parity_s_table() -> None:
    settings = Settings()
    assert (settings.pause_ms, settings.max_utterance_ms, settings.max_utterance_bytes) == (
        3000,
        20000,
        512000,
    )


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text("pause_ms = 100\nmax_utterance_ms = 200\nmax_utterance_bytes = 300\n")
    settings = load_settings(
        {"pause_ms": "150"},
        environ={"SWITCHBOARD_MAX_UTTERANCE_MS": "250"},
        config_path=str(config),
    )
    assert (settings.pause_ms, settings.max_utterance_ms, settings.max_utterance_bytes) == (
        150,
        250,
        300,
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [("pause_ms", "0"), ("max_utterance_ms", "1.5"), ("max_utterance_bytes", "-1")],
)
def test_nonsense_is_refused_with_the_flag_named(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match="--" + key.replace("_", "-")):
        load_settings({key: value}, environ={})
