"""Scheduler URLs as users type them (pure)."""

from __future__ import annotations

import pytest

from switchboard.cli import DEFAULT_URL as CLI_DEFAULT_URL
from switchboard.client.urls import DEFAULT_URL, endpoint


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ws://127.0.0.1:5010", "ws://127.0.0.1:5010/ws/session"),
        ("http://127.0.0.1:5010/", "ws://127.0.0.1:5010/ws/session"),
        ("https://sb.example:443", "wss://sb.example:443/ws/session"),
        ("127.0.0.1:5010", "ws://127.0.0.1:5010/ws/session"),
        ("ws://proxy:80/lingua/session", "ws://proxy:80/lingua/session"),
    ],
)
def test_endpoint(given: str, expected: str) -> None:
    assert endpoint(given, "/ws/session") == expected


def test_bad_urls_are_refused() -> None:
    with pytest.raises(ValueError):
        endpoint("ftp://host:21", "/ws/node")
    with pytest.raises(ValueError):
        endpoint("ws://", "/ws/node")


def test_the_cli_default_is_the_sdk_default() -> None:
    """cli.py spells the default out (so `serve` loads no client code); they must agree."""
    assert CLI_DEFAULT_URL == DEFAULT_URL
