"""The ``switchboard`` command (protocol.md §6): parse flags, build Settings, hand off.

Every option is a plain string that defaults to None, so "not given" stays distinguishable and
a flag's value is parsed and checked by :func:`switchboard.config.load_settings` exactly like
the same key from the environment or the config file — one set of rules and error messages.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
import tomllib
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import click

from switchboard import DISTRIBUTION, __version__
from switchboard.bench import cli as bench_cli
from switchboard.chaos import command as chaos_command
from switchboard.config import Settings, flag_name, load_settings
from switchboard.errors import ConfigError

_F = TypeVar("_F", bound=Callable[..., Any])

# (Settings key, metavar, help) for every valued option; the default is added from Settings.
# Token flags are visible to anyone running `ps`, hence the nudge towards the environment.
_VALUED_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("host", "HOST", "Address to listen on."),
    ("port", "PORT", "Port to listen on (0 picks a free one)."),
    ("store", "memory|redis", "Reservation store."),
    (
        "redis_url",
        "URL",
        "Redis to use (redis+cluster://HOST:PORT[,HOST:PORT...] for a Redis Cluster);"
        " implies --store redis.",
    ),
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
    ("max_sessions", "N", "Open sessions before TOO_MANY_SESSIONS."),
    (
        "max_connections_per_address",
        "N",
        "Open connections from one address (loopback too) before TOO_MANY_CONNECTIONS; 0: off.",
    ),
    ("ping_interval", "SECONDS", "Ping a silent WebSocket; drop it if no answer; 0: off."),
    ("max_frames_per_second", "N", "Frames/s one WebSocket may send (RATE_LIMITED); 0: off."),
    ("frame_burst", "FRAMES", "Frames one WebSocket may send at once above that rate."),
    (
        "max_http_requests_per_address",
        "N",
        "Plain HTTP requests in progress from one address before 429; 0: off.",
    ),
    ("pause_ms", "MS", "Streamed audio: cut an utterance after this much silence."),
    ("max_utterance_ms", "MS", "Streamed audio: cut an utterance once it is this long."),
    ("max_utterance_bytes", "BYTES", "Streamed audio: cut an utterance once it is over this size."),
    ("room_idle", "SECONDS", "A room with no join or delivered translation this long expires."),
    ("log_level", "LEVEL", "debug, info, warning, error or critical."),
    ("log_format", "text|json", "json: one JSON object per line (trace_id, job_id, ...)."),
    ("redis_namespace", "PREFIX", "Prefix of every Redis key."),
    ("snapshot_min_interval", "SECONDS", "Least time between two snapshot rebuilds."),
    (
        "design",
        "snapshot|global_lock|null",
        "global_lock: the old design; null: no scheduling (E0's floor). Benchmarks only.",
    ),
    ("record", "FILE", "Append session events to FILE as JSON lines (switchboard replay)."),
    ("instance_id", "ID", "This instance's name in a cluster on one Redis (default: generated)."),
    ("instance_ttl", "SECONDS", "Presence lifetime: an instance silent this long is gone."),
    ("max_tenants", "N", "Distinct tenants tracked at once; past it, new ones share the default."),
    ("priority_aging", "SECONDS", "A class waiting this long is served one class higher; 0: off."),
    (
        "workers",
        "N",
        "Run N instances behind one port (SO_REUSEPORT), each a cluster member; needs Redis.",
    ),
    (
        "overload_loop_lag",
        "SECONDS",
        "Refuse new utterances OVERLOADED past this loop lag; 0: off.",
    ),
    (
        "overload_store_backlog",
        "N",
        "Refuse new utterances OVERLOADED past this many store calls owed; 0: off.",
    ),
    (
        "overload_queue_age",
        "SECONDS",
        "Refuse new utterances OVERLOADED once a job has waited this long; 0: off.",
    ),
    ("overload_retry_after", "SECONDS", "Least retry_after_ms an OVERLOADED answer suggests."),
)

_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(Settings)}

# switchboard.client.urls.DEFAULT_URL, spelled out so that `serve` imports no client code.
DEFAULT_URL = "ws://127.0.0.1:5010"
POOLS_URL = "http://127.0.0.1:5010"  # switchboard.client.pools.DEFAULT_URL, likewise (ops too)

# What each extra of pyproject.toml adds that a command cannot run without (by import name;
# tests/unit/test_extras.py keeps this in step with pyproject.toml).  uvloop is left out: the
# runner falls back to asyncio's loop without it.
_SERVER_MODULES = ("redis", "hiredis", "prometheus_client", "immutables")
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "server": _SERVER_MODULES,
    "agent": ("psutil",),
    "demo": (*_SERVER_MODULES, "psutil", "rich"),
    "bench": (*_SERVER_MODULES, "psutil", "rich"),
}
# The commands that need more than the bare install (the client SDK, `translate`, `pools`,
# and the operator commands `status`, `nodes`, `drain`, `undrain`).
COMMAND_EXTRAS: dict[str, str] = {
    "serve": "server",
    "node": "agent",
    "demo": "demo",
    "bench": "bench",
    "replay": "bench",
    "chaos": "bench",
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]


def _require_extra(command: str) -> None:
    """Exit 2 with the pip command to run when ``command``'s extra is not installed: checked
    before the command imports anything, so a client-only install gets one sentence instead of
    a traceback from deep inside the server stack."""
    extra = COMMAND_EXTRAS[command]
    missing = missing_modules(extra)
    if missing:
        click.echo(
            f"switchboard: error: `switchboard {command}` needs the [{extra}] extra, which is "
            f"not installed (missing: {', '.join(missing)}). "
            f"Install it with: pip install '{DISTRIBUTION}[{extra}]'",
            err=True,
        )
        sys.exit(2)


def _check_extra_first(command: click.Command) -> None:
    """Make ``command`` check its extra before its own body runs (after parsing, so --help
    still works without the extra)."""
    callback = command.callback
    assert callback is not None and command.name is not None
    name = command.name

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _require_extra(name)
        return callback(*args, **kwargs)

    command.callback = checked


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
    "--streaming-asr/--no-streaming-asr",
    "streaming_asr",
    default=None,
    help="Ask nodes to stream asr_partial in every job_assign.  [default: on]",
)
@click.option(
    "--otel",
    is_flag=True,
    default=None,
    help="One OpenTelemetry span per utterance, over OTLP (needs the [otel] extra).",
)
@click.option(
    "--log-jobs",
    is_flag=True,
    default=None,
    help="Log each step of each job at DEBUG, with its trace_id (switchboard.jobs).",
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
    if settings.otel and importlib.util.find_spec("opentelemetry") is None:
        click.echo(
            "switchboard: error: --otel needs the [otel] extra, which is not installed. "
            f"Install it with: pip install '{DISTRIBUTION}[otel]'",
            err=True,
        )
        sys.exit(2)
    _configure_logging(settings)
    logging.getLogger("switchboard").info("starting with %s", settings.public_view())
    # Imported only now: a bad command line must fail fast, without loading the server stack.
    from switchboard.server.runner import run  # type: ignore[import-not-found, unused-ignore]

    hooks = None
    if settings.design != "snapshot" or settings.record is not None:
        from switchboard.bench.hooks import tool_hooks  # the tools plug in; the server never

        hooks = tool_hooks(settings)
    if settings.workers > 1:
        from switchboard.server.workers import run_workers

        sys.exit(run_workers(settings, hooks))
    sys.exit(run(settings, hooks))


def _node_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> None:
    """``node --config FILE``: a TOML table keyed by the flags' names (``url = [...]``,
    ``pair = [...]``, ``max_concurrency = 2``) becomes the defaults under the environment
    (SWITCHBOARD_NODE_*) and the flags, as ``serve``'s file is."""
    if path is None:
        return
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}") from None
    assert ctx.command is not None
    names = {
        param.opts[0].lstrip("-").replace("-", "_"): param.name
        for param in ctx.command.params
        if isinstance(param, click.Option) and param.name not in (None, "config_path")
    }
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise click.BadParameter(f"unknown key(s) in {path}: {', '.join(unknown)}")
    ctx.default_map = {names[key]: value for key, value in table.items()}


@main.command(context_settings={"auto_envvar_prefix": "SWITCHBOARD_NODE"})
@click.option(
    "--url",
    multiple=True,
    default=(DEFAULT_URL,),
    show_default=True,
    help="The scheduler; repeat (or separate by commas) for instances of one cluster, tried"
    " in turn when a connection is lost or refused.",
)
@click.option(
    "--pair",
    "pairs",
    multiple=True,
    default=("en:de",),
    show_default=True,
    metavar="SRC:TGT",
    help="A language pair this node serves (repeat for more).",
)
@click.option(
    "--services", default="asr,nmt,tts", show_default=True, help="Services reported ready."
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(1, 100_000),
    default=4,
    show_default=True,
    help="Jobs run at once; more are refused with NODE_BUSY.",
)
@click.option("--node-id", default=None, help="Stable id (default: assigned by the scheduler).")
@click.option(
    "--token",
    envvar="SWITCHBOARD_NODE_TOKEN",
    default=None,
    help="Node token (prefer SWITCHBOARD_NODE_TOKEN).",
)
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.01),
    default=15.0,
    show_default=True,
    help="Seconds between heartbeats (the scheduler's --heartbeat-interval).",
)
@click.option(
    "--reconnect-max",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="Longest wait between reconnection attempts (exponential backoff, jittered).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="On SIGTERM, how long running jobs may take to finish.",
)
@click.option(
    "--backend",
    default="pseudo",
    show_default=True,
    metavar="pseudo|MODULE:CLASS",
    help="pseudo: the stand-in PseudoTranslateBackend (not a real model); or a Backend"
    " subclass importable from the current directory or the environment.",
)
@click.option(
    "--latency-median",
    type=click.FloatRange(min=0),
    default=0.15,
    show_default=True,
    help="Pseudo backend: median job latency, seconds.",
)
@click.option(
    "--latency-p99",
    type=click.FloatRange(min=0),
    default=0.6,
    show_default=True,
    help="Pseudo backend: 99th percentile job latency, seconds.",
)
@click.option("--seed", type=int, default=None, help="Seed of the pseudo backend's latencies.")
@click.option("--partials/--no-partials", default=False, help="Pseudo backend streams asr_partial.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=_node_config,
    help="TOML file keyed by these flags' names (url = [...]). Flags beat SWITCHBOARD_NODE_*"
    " beat it.",
)
def node(**options: Any) -> None:
    """Run a node agent (contract §1): register, heartbeat, run jobs; drain on SIGTERM.

    Every flag also reads from SWITCHBOARD_NODE_<FLAG> (SWITCHBOARD_NODE_URL="ws://a ws://b")
    and from --config FILE."""
    from switchboard.agent.command import NodeOptions, run_node

    sys.exit(run_node(NodeOptions(**options)))


@main.command()
@click.argument("audio", required=False, metavar="[AUDIO]")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The scheduler.")
@click.option("--src", "src_lang", default="en", show_default=True, help="Source language.")
@click.option("--tgt", "tgt_lang", default="de", show_default=True, help="Target language.")
@click.option(
    "--token",
    envvar="SWITCHBOARD_SESSION_TOKEN",
    default=None,
    help="Session token (prefer SWITCHBOARD_SESSION_TOKEN).",
)
@click.option("--raw", is_flag=True, help="AUDIO is raw mono PCM16 (needs --sample-rate).")
@click.option(
    "--sample-rate",
    type=click.IntRange(min=1),
    default=None,
    help="Sample rate of --raw audio, or of the generated tone (16000).",
)
@click.option(
    "--generate-seconds",
    type=click.FloatRange(min=0.01, max=600),
    default=None,
    help="Send a generated sine tone of this length instead of a file.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.01),
    default=60.0,
    show_default=True,
    help="Seconds allowed for connecting, sending and the answer.",
)
@click.option(
    "--overload-retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Resend an utterance refused OVERLOADED this often, after the server's retry_after_ms"
    " with jitter (0: never).",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Stream the audio as audio_chunk frames; print one answer per utterance.",
)
@click.option(
    "--chunk-ms",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="With --stream: audio per chunk.",
)
@click.option(
    "--utterance-seconds",
    type=click.FloatRange(min=0.01),
    default=10.0,
    show_default=True,
    help="With --stream: end an utterance after this much audio.",
)
@click.option("--realtime", is_flag=True, help="With --stream: send chunks at the audio's pace.")
def translate(
    audio: str | None,
    raw: bool,
    sample_rate: int | None,
    generate_seconds: float | None,
    stream: bool,
    chunk_ms: int,
    utterance_seconds: float,
    realtime: bool,
    **options: Any,
) -> None:
    """Translate one utterance (a mono 16-bit WAV file by default) and print the answer."""
    from switchboard.client.audio import AudioError
    from switchboard.client.translate import (
        StreamPlan,
        load_clip,
        run_translate,
        run_translate_stream,
    )

    try:
        clip = load_clip(audio, raw=raw, sample_rate=sample_rate, generate_seconds=generate_seconds)
    except AudioError as exc:
        click.echo(f"switchboard: error: {exc}", err=True)
        sys.exit(2)
    if stream:
        plan = StreamPlan(chunk_ms=chunk_ms, utterance_seconds=utterance_seconds, realtime=realtime)
        sys.exit(run_translate_stream(clip, plan=plan, **options))
    sys.exit(run_translate(clip, **options))


@main.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Seconds of client load.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Node agents (stand-in backend), one process each.",
)
@click.option(
    "--sessions",
    type=click.IntRange(1, 5000),
    default=50,
    show_default=True,
    help="Concurrent client sessions.",
)
@click.option(
    "--store",
    type=click.Choice(["memory", "redis"]),
    default=None,
    help="The scheduler's reservation store.  [default: memory]",
)
@click.option("--redis-url", default=None, help="Redis for --store redis; implies it.")
@click.option(
    "--streaming",
    is_flag=True,
    help="Sessions stream their speech as audio_chunk frames instead of utterances.",
)
@click.option(
    "--rooms",
    is_flag=True,
    default=False,
    help="Sessions talk in rooms of three (en, de, fr): each utterance fans out to the others.",
)
@click.option(
    "--saturate",
    is_flag=True,
    default=False,
    help="Offer more speech than the nodes serve: the scheduler sheds it (OVERLOADED), the"
    " SDK backs off and resends; the view counts the sheds.",
)
def demo(**options: Any) -> None:
    """Run a scheduler, local stand-in nodes and client sessions; show it live."""
    from switchboard.demo import DemoOptions, run_demo

    try:
        demo_options = DemoOptions.from_flags(**options)
    except ValueError as exc:
        click.echo(f"switchboard: error: {exc}", err=True)
        sys.exit(2)
    sys.exit(run_demo(demo_options))


@main.group()
def pools() -> None:
    """Read or replace a running scheduler's configured pools (GET/PUT /api/v1/pools)."""


# The scheduler and the admin token, for every command that talks to the operator API.
_URL_OPTION = click.option(
    "--url",
    envvar="SWITCHBOARD_URL",
    default=POOLS_URL,
    show_default=True,
    help="The scheduler (or SWITCHBOARD_URL).",
)
_TOKEN_OPTION = click.option(
    "--token",
    envvar="SWITCHBOARD_ADMIN_TOKEN",
    default=None,
    help="Admin token (prefer SWITCHBOARD_ADMIN_TOKEN).",
)


def _operator_options(command: _F) -> _F:
    """--url, --token and --format, shared by `pools get` and `pools put`."""
    fmt = click.option(
        "--format",
        "fmt",
        type=click.Choice(["json", "table"]),
        default="json",
        show_default=True,
        help="How to print the pools.",
    )
    return _URL_OPTION(_TOKEN_OPTION(fmt(command)))


@pools.command("get")
@_operator_options
def pools_get(url: str, token: str | None, fmt: str) -> None:
    """Print the pools (GET /api/v1/pools); exit status 1 with the server's error."""
    from switchboard.client.pools import run_pools_get

    sys.exit(run_pools_get(url=url, token=token, fmt=fmt))


@pools.command("put")
@click.argument("file", metavar="FILE")
@_operator_options
def pools_put(file: str, url: str, token: str | None, fmt: str) -> None:
    """Replace the configured pools with FILE's (PUT /api/v1/pools) and print them.

    FILE is JSON ({"pools": [...]}, or a list as `pools get` prints it) or TOML (*.toml) with
    [[pools]] tables, such as the `serve` config file. With Redis every instance gets them.
    Exit status 1 with the server's error, 2 when FILE cannot be read.
    """
    from switchboard.client.pools import run_pools_put

    sys.exit(run_pools_put(file, url=url, token=token, fmt=fmt))


def _ops_options(command: _F) -> _F:
    """--url, --token and --json, shared by `status`, `nodes`, `drain` and `undrain`."""
    as_json = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
    return _URL_OPTION(_TOKEN_OPTION(as_json(command)))


@main.command()
@_ops_options
def status(url: str, token: str | None, as_json: bool) -> None:
    """The scheduler at a glance: nodes by status, sessions, jobs, dispatch latency
    (GET /api/v1/stats and /api/v1/latency). Exit status 1 with the server's error."""
    from switchboard.client.ops import run_status

    sys.exit(run_status(url=url, token=token, as_json=as_json))


@main.command()
@_ops_options
def nodes(url: str, token: str | None, as_json: bool) -> None:
    """The connected nodes with status, heartbeat age, load against capacity and CPU, memory
    and GPU use (GET /api/v1/nodes). Exit status 1 with the server's error."""
    from switchboard.client.ops import run_nodes

    sys.exit(run_nodes(url=url, token=token, as_json=as_json))


@main.command()
@click.argument("node_id", metavar="NODE")
@_ops_options
def drain(node_id: str, url: str, token: str | None, as_json: bool) -> None:
    """Stop sending NODE new jobs; its running jobs finish (POST .../drain). Exit status 3
    when there is no such node, 1 with the server's error."""
    from switchboard.client.ops import run_node_action

    sys.exit(run_node_action("drain", node_id, url=url, token=token, as_json=as_json))


@main.command()
@click.argument("node_id", metavar="NODE")
@_ops_options
def undrain(node_id: str, url: str, token: str | None, as_json: bool) -> None:
    """Let a drained NODE take new jobs again (POST .../undrain). Exit status 3 when there is
    no such node, 1 with the server's error."""
    from switchboard.client.ops import run_node_action

    sys.exit(run_node_action("undrain", node_id, url=url, token=token, as_json=as_json))


# Issue 4's benchmarks; the bodies live in switchboard.bench.cli (only click until they run).
main.add_command(bench_cli.bench)
main.add_command(bench_cli.replay)
# Issue 5's fault suite (docs/reliability.md); likewise only click until it runs.
main.add_command(chaos_command.chaos)

for _name in COMMAND_EXTRAS:
    _check_extra_first(main.commands[_name])


def _configure_logging(settings: Settings) -> None:
    from switchboard.logs import configure

    configure(level=settings.log_level, fmt=settings.log_format, jobs=settings.log_jobs)
