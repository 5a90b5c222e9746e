"""The ``switchboard`` command (protocol.md §6): parse flags, build Settings, hand off.

Every option is a plain string that defaults to None, so "not given" stays distinguishable and
a flag's value is parsed and checked by :func:`switchboard.config.load_settings` exactly like
the same key from the environment or the config file — one set of rules and error messages.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import click

from switchboard import __version__
from switchboard.config import Settings, flag_name, load_settings
from switchboard.errors import ConfigError

_F = TypeVar("_F", bound=Callable[..., Any])

# (Settings key, metavar, help) for every valued option; the default is added from Settings.
# Token flags are visible to anyone running `ps`, hence the nudge towards the environment.
_VALUED_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("host", "HOST", "Address to listen on."),
    ("port", "PORT", "Port to listen on (0 picks a free one)."),
    ("store", "memory|redis", "Reservation store."),
    ("redis_url", "URL", "Redis (or Redis Cluster) to use; implies --store redis."),
    ("heartbeat_interval", "SECONDS", "Expected node heartbeat period; offline after 3 missed."),
    ("job_timeout", "SECONDS", "No result by then: cancel and retry elsewhere."),
    ("pending_timeout", "SECONDS", "How long an utterance may wait for a free node."),
    ("max_attempts", "N", "Attempts per utterance, the first included."),
    ("default_max_concurrency", "N", "Per-node slots when a node does not say."),
    ("max_pending_per_session", "N", "Pending utterances per session before TOO_MANY_PENDING."),
    ("max_frame_bytes", "BYTES", "Largest frame accepted."),
    ("node_token", "TOKEN", "Token nodes must present (prefer SWITCHBOARD_NODE_TOKEN)."),
    ("session_token", "TOKEN", "Token sessions must present (prefer SWITCHBOARD_SESSION_TOKEN)."),
    ("admin_token", "TOKEN", "Operator API bearer token (prefer SWITCHBOARD_ADMIN_TOKEN)."),
    ("reservation_lease", "SECONDS", "Slot lease lifetime without renewal."),
    ("session_outbox_limit", "FRAMES", "Frames queued to a session before it is dropped."),
    ("handshake_timeout", "SECONDS", "Time a connection has to send its first frame."),
    ("log_level", "LEVEL", "debug, info, warning, error or critical."),
    ("redis_namespace", "PREFIX", "Prefix of every Redis key."),
    ("snapshot_min_interval", "SECONDS", "Least time between two snapshot rebuilds."),
)

_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(Settings)}


def _valued_options(command: _F) -> _F:
    # Applied in reverse so --help lists them in the order of §6.
    for key, metavar, help_text in reversed(_VALUED_OPTIONS):
        default = _DEFAULTS[key]
        shown = f"  [default: {default}]" if default is not None else ""
        option = click.option(
            flag_name(key), key, metavar=metavar, default=None, help=help_text + shown
        )
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="switchboard")
def main() -> None:
    """Switchboard: scheduler for speech-translation GPU nodes."""


@main.command()
@_valued_options
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="Allow a non-loopback --host without all three tokens.",
)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    default=None,
    help="TOML file with the same keys (node_token = ...). Flags beat SWITCHBOARD_* beat it.",
)
def serve(config_path: str | None, **flags: object) -> None:
    """Start the scheduler (protocol.md §6)."""
    try:
        settings = load_settings(flags, environ=os.environ, config_path=config_path)
    except ConfigError as exc:
        click.echo(f"switchboard: error: {exc}", err=True)
        sys.exit(2)
    _configure_logging(settings)
    logging.getLogger("switchboard").info("starting with %s", settings.public_view())
    # Imported only now: a bad command line must fail fast, without loading the server stack.
    from switchboard.server.runner import run  # type: ignore[import-not-found, unused-ignore]

    sys.exit(run(settings))


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Set apart from basicConfig, which does nothing at all once the root has a handler.
    logging.getLogger().setLevel(settings.log_level.upper())
