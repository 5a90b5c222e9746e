"""Start-up settings (protocol.md §6): one frozen value, read once, handed to everything.

Core modules never read ``os.environ``; they receive a :class:`Settings`. The value is built by
:func:`load_settings` from four sources, highest precedence first::

    flag (--job-timeout 0.5)  >  environment (SWITCHBOARD_JOB_TIMEOUT)
                              >  TOML file (--config, key job_timeout)  >  default

Every key of §6 is here with its §6 default. Keys that §6 does not name are extensions; each is
settable the same three ways:

``reservation_lease`` (15.0 s)
    how long a slot lease lives without renewal; live jobs renew it every third of it, so a
    crashed scheduler's slots come back by themselves.
``session_outbox_limit`` (1024 frames)
    frames queued to one session before it is closed as a slow consumer.
``handshake_timeout`` (10.0 s)
    how long a connection may take to send its first frame.
``max_sessions`` (10000)
    open sessions; one more ``session_init`` is refused with ``TOO_MANY_SESSIONS``.
``max_connections_per_address`` (256)
    open WebSocket connections (nodes and sessions, handshakes included) from one remote
    address; one more is refused with ``TOO_MANY_CONNECTIONS``.  Loopback counts like any
    other address (behind a local reverse proxy every peer is 127.0.0.1: raise it there);
    0 turns the limit off.
``ping_interval`` (20.0 s)
    a WebSocket (node or session) that has sent nothing for this long is pinged; one that
    neither answers nor sends anything within half of it more is dropped as dead, which frees
    its jobs and slots as any disconnect does.  0 turns pings off.
``max_frames_per_second`` (1000) and ``frame_burst`` (2000)
    a token bucket per WebSocket connection: it holds ``frame_burst`` frames and refills at
    ``max_frames_per_second``; a frame that finds it empty gets ``RATE_LIMITED`` and the
    connection is closed (1008).  0 turns the limit off.
``max_http_requests_per_address`` (32)
    plain HTTP requests (operator API, ``/metrics``, health, dashboard) in progress at once
    from one remote address; one more is answered 429.  WebSocket connections are not counted
    here (``max_connections_per_address`` is theirs).  0 turns the limit off.
``pause_ms`` (3000), ``max_utterance_ms`` (20000), ``max_utterance_bytes`` (512000)
    how a session's ``audio_chunk`` stream is cut into utterances (lingua-parity.md §3): after
    this many milliseconds without a chunk; once the buffered audio is this long (pcm16:
    bytes/32 at 16 kHz; opus: 20 ms per 60 bytes); once the buffer holds more than this many
    bytes (``sessions/streaming.py``).
``room_idle`` (1800.0 s)
    a room with no creation, join or delivered room translation for this long expires: its
    members get ``room_expired`` and are out of it (lingua-parity §5 "Expiry").
``log_level`` ("info")
    one of debug, info, warning, error, critical (any case).
``log_format`` ("text")
    ``text`` for people, ``json`` for one JSON object per line (protocol.md §7 "Logs").
``log_jobs`` (false)
    log every step of every job (accepted, reserved, assigned, result, answered, ...) at
    DEBUG on the ``switchboard.jobs`` logger, each line with the job's ``trace_id``, whatever
    ``log_level`` is (``log_level = "debug"`` turns them on too).  Off, they cost nothing.
``otel`` (false)
    one OpenTelemetry span per utterance (accepted to answered), exported over OTLP as the
    standard ``OTEL_*`` variables say; needs the ``[otel]`` extra.  Off, OpenTelemetry is
    never imported.
``redis_namespace`` ("switchboard")
    prefix of every Redis key, so several deployments can share one Redis.
``snapshot_min_interval`` (0.005 s)
    bursts of structural changes coalesce into one snapshot rebuild at most this often;
    0 rebuilds on every change.
``design`` ("snapshot")
    ``global_lock`` runs the model of the scheduler before the seed (``switchboard.legacy``:
    one global lock across selection, the reservation and heartbeats), so that the benchmark
    can compare both in one run (docs/benchmarks.md).  Never for production.
``record`` (none)
    a file to which session events are appended as JSON lines (opened, utterance accepted,
    answer sent, closed), for ``switchboard replay``; unset records nothing.
``instance_id`` (generated)
    this instance's name in a cluster (instances on one Redis namespace, docs/scale-out.md):
    its presence key, its inbox, and the ``instance_id`` of the nodes it holds in
    ``/api/v1/nodes``.  Unset, each start draws a fresh one (``<host>-<random>``); set it to
    keep one across restarts (a restarted instance then gets what its inbox still holds).
``instance_ttl`` (5.0 s)
    the lifetime of an instance's presence key, refreshed every third of it; an instance
    silent that long is gone: its nodes leave every view, and jobs other instances placed on
    them fail over.  Redis only.
``workers`` (1)
    ``serve`` runs this many full instances behind one port (SO_REUSEPORT), each its own
    process, event loop and cluster member (``<instance_id>-w<k>``), supervised by the parent
    (``server/workers.py``).  More than one needs the Redis store: the embedded store lives in
    one process's memory, so workers on it could not share slots and would over-fill nodes.
``overload_loop_lag`` (0.02 s), ``overload_store_backlog`` (512), ``overload_queue_age`` (0: off)
    when the scheduler itself is saturated a new utterance is refused at once with
    ``OVERLOADED`` (protocol.md §3): the event loop runs this late, this many reservation-store
    calls are owed an answer, or the waiting line's oldest job has waited this long.  Overload
    ends once every signal is below half its bound.  0 turns a signal off
    (``dispatch/overload.py``).
``overload_retry_after`` (0.25 s)
    the least ``details.retry_after_ms`` an ``OVERLOADED`` answer suggests.
``pools`` (none; the config file only)
    the configured pools, as ``[[pools]]`` tables with the fields of the ``PUT /api/v1/pools``
    body (``pool_id``, ``name``, ``languages``, ``required_services``), checked by the same
    parser (``runtime/pool_config.py``), so a table that PUT would refuse stops the start with
    a ConfigError.  There is no flag and no environment variable for it: a list of tables does
    not fit in one.  Empty (the default) means generated pools.  With Redis, the file only
    seeds the pools Redis keeps for every instance (``server/pool_sync.py`` has the
    precedence).

``tenants`` (none; the config file only)
    ``[tenants.<name>]`` tables: ``weight`` (a number in (0, 1000], default 1), ``token``
    (a session token that makes a session this tenant), ``priority`` (its sessions' default
    class, -9..9 or low/normal/high, default 0) and ``max_priority`` (the highest class its
    sessions may ask for in ``features.priority``, default 9), checked by
    ``dispatch/tenants.py``.  ``[tenants.default]`` is the tenant of sessions that name none
    (docs/protocol.md §7 "Tenants").  Tokens never appear in logs or errors.
``max_tenants`` (1000)
    distinct tenants tracked at once; a session naming a new unknown ``tenant_id`` past it
    schedules as the default tenant.
``priority_aging`` (1.0 s)
    a waiting class whose oldest job has waited this long is served as if one class higher
    (two after twice as long, …); 0 gives strict priority.

``streaming_asr`` (true)
    every ``job_assign`` carries ``enable_streaming_asr: true`` and
    ``partial_update_interval_ms: 1000``, so Lingua's nodes stream ``asr_partial``
    (lingua-parity §2); false leaves both out.

Rules beyond plain values:

* ``--redis-url`` implies ``--store redis`` (§6). If ``store = "memory"`` comes from a source
  of higher or equal precedence than the URL, that is a contradiction and a ConfigError; a
  ``memory`` from a *lower* source is simply overridden, like any other lower source.
* A non-loopback ``host`` needs all three tokens unless ``insecure`` is set (§6); this is
  checked when a Settings is built, so no Settings that breaks it can exist.
* Secrets never reach logs or tracebacks (style.md 7): tokens and the password part of the
  Redis URL appear as ``***`` in ``repr``, in :meth:`Settings.public_view` and in every error.
* An empty token is an error rather than "no token": ``SWITCHBOARD_NODE_TOKEN=`` from an unset
  template variable must not silently turn into a token every peer can guess.
* The config file may also be named by ``SWITCHBOARD_CONFIG``, as every flag may (§6); an
  explicit ``config_path`` wins over it.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from switchboard.errors import ConfigError
from switchboard.runtime.pool_config import PoolConfigInvalid, parse_pool_tables
from switchboard.runtime.tenant_config import TenantConfigInvalid, TenantSpec, parse_tenant_tables
from switchboard.runtime.values import Pool

__all__ = ["ENV_PREFIX", "Settings", "is_loopback_host", "load_settings", "redact_url"]

ENV_PREFIX: Final = "SWITCHBOARD_"
TOKEN_FIELDS: Final = ("node_token", "session_token", "admin_token")
STORES: Final = ("memory", "redis")
DESIGNS: Final = ("snapshot", "global_lock", "null")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("text", "json")
REDACTED: Final = "***"
# Keys only the config file can give (no SWITCHBOARD_* variable, no flag).
FILE_ONLY: Final = frozenset({"pools", "tenants"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything Switchboard reads at start-up; see the module docstring for each key."""

    host: str = "127.0.0.1"
    port: int = 5010
    store: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    heartbeat_interval: float = 15.0
    job_timeout: float = 30.0
    pending_timeout: float = 10.0
    max_attempts: int = 3
    default_max_concurrency: int = 4
    max_pending_per_session: int = 64
    max_frame_bytes: int = 8388608
    # repr=False is belt and braces: __repr__ below already redacts, but should it ever be
    # removed the generated one must still leave the secrets out.
    node_token: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    insecure: bool = False
    # Extensions (not in §6).
    reservation_lease: float = 15.0
    session_outbox_limit: int = 1024
    handshake_timeout: float = 10.0
    max_sessions: int = 10000
    max_connections_per_address: int = 256
    ping_interval: float = 20.0
    max_frames_per_second: int = 1000
    frame_burst: int = 2000
    max_http_requests_per_address: int = 32
    pause_ms: int = 3000
    max_utterance_ms: int = 20000
    max_utterance_bytes: int = 512000
    room_idle: float = 1800.0
    log_level: str = "info"
    log_format: str = "text"
    log_jobs: bool = False
    otel: bool = False
    redis_namespace: str = "switchboard"
    snapshot_min_interval: float = 0.005
    design: str = "snapshot"
    record: str | None = None
    pools: tuple[Pool, ...] = ()
    streaming_asr: bool = True
    instance_id: str | None = None
    instance_ttl: float = 5.0
    tenants: tuple[TenantSpec, ...] = ()
    max_tenants: int = 1000
    priority_aging: float = 1.0
    workers: int = 1
    overload_loop_lag: float = 0.02
    overload_store_backlog: int = 512
    overload_queue_age: float = 0.0
    overload_retry_after: float = 0.25

    def __post_init__(self) -> None:
        # Validate here, not only in load_settings, so a Settings built directly in code or a
        # test obeys the same rules as one built from the command line.
        for f in fields(self):
            problem = _SPECS[f.name].check(getattr(self, f.name))
            if problem is not None:
                name = _FILE_NAMES.get(f.name) or flag_name(f.name)
                raise ConfigError(f"{name}: {problem}")
        _check_exposure(self)
        _check_workers(self)

    def __repr__(self) -> str:
        # Hand-written so the Redis URL's password is redacted too, and so a set token shows
        # as '***' (useful to know) rather than vanishing.
        inner = ", ".join(f"{name}={value!r}" for name, value in self.public_view().items())
        return f"Settings({inner})"

    @property
    def is_loopback(self) -> bool:
        """True when ``host`` only accepts connections from this machine."""
        return is_loopback_host(self.host)

    def public_view(self) -> dict[str, object]:
        """Every setting, secrets replaced by ``***``: safe to log at start-up."""
        view: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in TOKEN_FIELDS and value is not None:
                value = REDACTED
            elif f.name == "redis_url":
                value = redact_url(value)
            elif f.name == "pools":
                value = [pool.to_json() for pool in value]
            elif f.name == "tenants":
                value = [spec.to_json() for spec in value]
            view[f.name] = value
        return view


def flag_name(key: str) -> str:
    """``job_timeout`` → ``--job-timeout``: how §6 names a key to the operator."""
    return "--" + key.replace("_", "-")


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) and ``localhost``; names are never resolved."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def redact_url(url: str) -> str:
    """The URL with its user-info and any ``password=`` query parameter replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host_port = parts.netloc.rpartition("@")[2]
        netloc = f"{REDACTED}@{host_port}" if "@" in parts.netloc else parts.netloc
        query = [
            (key, REDACTED if "pass" in key.lower() else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))
    except ValueError:
        # Unparseable: showing nothing is the only way to be sure nothing secret shows.
        return "<unparseable URL>"


# ---------------------------------------------------------------------------------------------
# Loading


class _Source(IntEnum):
    """Where a value came from; a larger number wins."""

    DEFAULT = 0
    FILE = 1
    ENV = 2
    FLAG = 3


@dataclass(frozen=True, slots=True)
class _Given:
    value: object
    source: _Source
    origin: str  # how to name it in a message: "--port", "SWITCHBOARD_PORT", "port in a.toml"


def load_settings(
    flags: Mapping[str, object],
    *,
    environ: Mapping[str, str],
    config_path: str | None = None,
) -> Settings:
    """Build Settings from flags > environment > TOML file > defaults (protocol.md §6).

    ``flags`` maps keys spelled as Settings fields (``job_timeout``) to what the user typed,
    as strings or already typed values; a key that is absent or None was not given.
    Raises ConfigError with a message fit to show the operator.
    """
    path = config_path if config_path is not None else environ.get(ENV_PREFIX + "CONFIG")
    given: dict[str, _Given] = {}
    # Lowest precedence first, so each later layer simply overwrites.
    for layer in (_file_layer(path), _env_layer(environ), _flag_layer(flags)):
        given.update(layer)
    _imply_redis_store(given)
    values: dict[str, Any] = {key: g.value for key, g in given.items()}
    return Settings(**values)


def _flag_layer(flags: Mapping[str, object]) -> dict[str, _Given]:
    layer: dict[str, _Given] = {}
    for key, raw in flags.items():
        if raw is None:
            continue
        if key not in _SPECS:
            raise ConfigError(f"unknown setting {key!r}")
        layer[key] = _given(key, raw, _Source.FLAG, flag_name(key))
    return layer


def _env_layer(environ: Mapping[str, str]) -> dict[str, _Given]:
    # Unknown SWITCHBOARD_* variables are not errors: tests and tools use the prefix too.
    layer: dict[str, _Given] = {}
    for key in _SPECS:
        if key in FILE_ONLY:
            continue
        name = ENV_PREFIX + key.upper()
        if name in environ:
            layer[key] = _given(key, environ[name], _Source.ENV, name)
    return layer


def _file_layer(path: str | None) -> dict[str, _Given]:
    if path is None:
        return {}
    table = _read_toml(path)
    layer: dict[str, _Given] = {}
    for key, raw in table.items():
        if key not in _SPECS:
            raise ConfigError(f"unknown key {key!r} in config file {path}{_suggest(key)}")
        layer[key] = _given(key, raw, _Source.FILE, f"{key} in {path}")
    return layer


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib names the line and column, never the offending value.
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key.replace("-", "_"), list(_SPECS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _given(key: str, raw: object, source: _Source, origin: str) -> _Given:
    spec = _SPECS[key]
    try:
        value = spec.parse(raw)
    except _Invalid as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    problem = spec.check(value)
    if problem is not None:
        raise ConfigError(f"{origin}: {problem}")
    return _Given(value, source, origin)


def _imply_redis_store(given: dict[str, _Given]) -> None:
    """§6: giving a Redis URL implies ``store = "redis"``."""
    url = given.get("redis_url")
    if url is None:
        return
    store = given.get("store")
    if store is None or (store.value == "memory" and store.source < url.source):
        given["store"] = _Given("redis", url.source, url.origin)
    elif store.value == "memory":
        raise ConfigError(
            "--store memory conflicts with --redis-url"
            f" (store from {store.origin}, Redis URL from {url.origin})"
        )


def _check_exposure(settings: Settings) -> None:
    """§6: listening beyond this machine without every token needs ``--insecure``."""
    tokens = [spec.token for spec in settings.tenants if spec.token is not None]
    if settings.session_token is not None and settings.session_token in tokens:
        raise ConfigError("[tenants]: a tenant's token must differ from --session-token")
    if settings.insecure or settings.is_loopback:
        return
    # Tenants' tokens authenticate sessions as --session-token does (dispatch/tenants.py).
    missing = [
        flag_name(key)
        for key in TOKEN_FIELDS
        if getattr(settings, key) is None and not (key == "session_token" and tokens)
    ]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"--host {settings.host} is not a loopback address and {', '.join(missing)}"
            f" {verb} not set; set {'it' if len(missing) == 1 else 'them'}"
            " (flag, SWITCHBOARD_* environment or config file) or pass --insecure"
            " to accept peers without tokens"
        )


def _check_workers(settings: Settings) -> None:
    """Workers share nothing but Redis: on the embedded store each would hold its own slots."""
    if settings.workers > 1 and settings.store != "redis":
        raise ConfigError(
            f"--workers {settings.workers} needs the Redis store (--redis-url URL): the embedded"
            " store lives in one process's memory, so separate worker processes could not share"
            " nodes' slots; use --workers 1 (the default) without Redis"
        )


# ---------------------------------------------------------------------------------------------
# Per-key parsing (strings from the environment or a file → typed) and checking (typed → ok?).
# Messages name the value except for secrets, which are never echoed.


class _Invalid(Exception):
    """A raw value that cannot be turned into the key's type; the text is the reason."""


_Parse = Callable[[object], object]
_Check = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class _Spec:
    parse: _Parse
    check: _Check


def _is_int(value: object) -> bool:
    # bool is an int in Python, but `port = true` is a mistake, not port 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_int(raw: object) -> object:
    if _is_int(raw):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise _Invalid(f"expected a whole number, got {raw!r}")


def _parse_seconds(raw: object) -> object:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise _Invalid(f"expected a number of seconds, got {raw!r}") from None
    else:
        raise _Invalid(f"expected a number of seconds, got {raw!r}")
    if not math.isfinite(value):
        raise _Invalid(f"expected a finite number of seconds, got {raw!r}")
    return value


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _parse_bool(raw: object) -> object:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise _Invalid(f"expected one of 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _parse_text(raw: object) -> object:
    if isinstance(raw, str):
        return raw.strip()
    raise _Invalid(f"expected a string, got {raw!r}")


def _parse_word(raw: object) -> object:
    # Choices are matched case-insensitively: `--log-level INFO` is not worth an error.
    if isinstance(raw, str):
        return raw.strip().lower()
    raise _Invalid(f"expected a string, got {raw!r}")


def _parse_secret(raw: object) -> object:
    # Kept verbatim (no strip): a token is compared byte for byte with what peers send.
    if isinstance(raw, str):
        return raw
    raise _Invalid("expected a string (value not shown: it is a secret)")


def _parse_pools(raw: object) -> object:
    if isinstance(raw, tuple) and all(isinstance(pool, Pool) for pool in raw):
        return raw  # already parsed (Settings built in code)
    if not isinstance(raw, list):
        raise _Invalid("expected [[pools]] tables (a list of tables)")
    try:
        return parse_pool_tables(raw)
    except PoolConfigInvalid as exc:
        raise _Invalid(f"invalid [[pools]]: {exc}") from None


def _check_pools(value: Any) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(pool, Pool) for pool in value):
        return f"expected a tuple of Pool, got {value!r}"
    if len({pool.pool_id for pool in value}) != len(value):
        return "pool_id values must be unique"
    return None


def _parse_tenants(raw: object) -> object:
    if isinstance(raw, tuple) and all(isinstance(spec, TenantSpec) for spec in raw):
        return raw  # already parsed (Settings built in code)
    if not isinstance(raw, Mapping):
        raise _Invalid("expected [tenants.<name>] tables")
    try:
        return parse_tenant_tables(raw)
    except TenantConfigInvalid as exc:
        raise _Invalid(str(exc)) from None


def _check_tenants(value: Any) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(spec, TenantSpec) for spec in value):
        return "expected a tuple of TenantSpec"
    if len({spec.name for spec in value}) != len(value):
        return "tenant names must be unique"
    return None


def _int_range(low: int, high: int | None = None) -> _Check:
    def check(value: Any) -> str | None:
        if not _is_int(value):
            return f"expected a whole number, got {value!r}"
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            return f"must be {bounds}, got {value}"
        return None

    return check


def _seconds(*, allow_zero: bool = False) -> _Check:
    def check(value: Any) -> str | None:
        if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
            return f"expected a finite number of seconds, got {value!r}"
        if value < 0 or (value == 0 and not allow_zero):
            return f"must be {'at least 0' if allow_zero else 'greater than 0'}, got {value}"
        return None

    return check


def _one_of(choices: tuple[str, ...]) -> _Check:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"expected one of {', '.join(choices)}, got {value!r}"
        return None

    return check


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


def _check_name(value: Any) -> str | None:
    # Hosts and key prefixes: whitespace inside is always a typo, and empty means nothing.
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return f"expected a non-empty string without spaces, got {value!r}"
    return None


def _check_redis_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return "expected a URL string"
    try:
        scheme = urlsplit(value).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss", "unix", "redis+cluster"):
        return (
            "expected a redis://, rediss://, unix:// or redis+cluster:// URL,"
            f" got {redact_url(value)!r}"
        )
    return None


def _check_instance_id(value: Any) -> str | None:
    # It names Redis keys (after the namespace's hash tag) and appears in the operator API.
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 128
        or any(c.isspace() or c in "{}:" for c in value)
    ):
        return f"expected 1-128 characters without spaces, braces or colons, got {value!r}"
    return None


def _check_optional_path(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        return f"expected a non-empty file path, got {value!r}"
    return None


def _check_secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        return "expected a non-empty string (value not shown: it is a secret)"
    return None


_SECONDS: Final = _Spec(_parse_seconds, _seconds())
_COUNT: Final = _Spec(_parse_int, _int_range(1))
_SECRET: Final = _Spec(_parse_secret, _check_secret)

# One entry per Settings field; tests/unit/test_config.py checks the two stay in step.
_SPECS: Final[Mapping[str, _Spec]] = {
    "host": _Spec(_parse_text, _check_name),
    "port": _Spec(_parse_int, _int_range(0, 65535)),  # 0: pick a free port (tests)
    "store": _Spec(_parse_word, _one_of(STORES)),
    "redis_url": _Spec(_parse_text, _check_redis_url),
    "heartbeat_interval": _SECONDS,
    "job_timeout": _SECONDS,
    "pending_timeout": _SECONDS,
    "max_attempts": _COUNT,
    "default_max_concurrency": _COUNT,
    "max_pending_per_session": _COUNT,
    "max_frame_bytes": _COUNT,
    "node_token": _SECRET,
    "session_token": _SECRET,
    "admin_token": _SECRET,
    "insecure": _Spec(_parse_bool, _check_bool),
    "reservation_lease": _SECONDS,
    "session_outbox_limit": _COUNT,
    "handshake_timeout": _SECONDS,
    "max_sessions": _COUNT,
    "max_connections_per_address": _Spec(_parse_int, _int_range(0)),  # 0: no limit
    "ping_interval": _Spec(_parse_seconds, _seconds(allow_zero=True)),  # 0: no pings
    "max_frames_per_second": _Spec(_parse_int, _int_range(0)),  # 0: no limit
    "frame_burst": _COUNT,
    "max_http_requests_per_address": _Spec(_parse_int, _int_range(0)),  # 0: no limit
    "pause_ms": _COUNT,
    "max_utterance_ms": _COUNT,
    "max_utterance_bytes": _COUNT,
    "room_idle": _SECONDS,
    "log_level": _Spec(_parse_word, _one_of(LOG_LEVELS)),
    "log_format": _Spec(_parse_word, _one_of(LOG_FORMATS)),
    "log_jobs": _Spec(_parse_bool, _check_bool),
    "otel": _Spec(_parse_bool, _check_bool),
    "redis_namespace": _Spec(_parse_text, _check_name),
    "snapshot_min_interval": _Spec(_parse_seconds, _seconds(allow_zero=True)),
    "design": _Spec(_parse_word, _one_of(DESIGNS)),
    "record": _Spec(_parse_text, _check_optional_path),
    "pools": _Spec(_parse_pools, _check_pools),
    "streaming_asr": _Spec(_parse_bool, _check_bool),
    "instance_id": _Spec(_parse_text, _check_instance_id),
    "instance_ttl": _SECONDS,
    "tenants": _Spec(_parse_tenants, _check_tenants),
    "max_tenants": _COUNT,
    "priority_aging": _Spec(_parse_seconds, _seconds(allow_zero=True)),  # 0: strict priority
    "workers": _Spec(_parse_int, _int_range(1, 256)),
    "overload_loop_lag": _Spec(_parse_seconds, _seconds(allow_zero=True)),  # 0: off
    "overload_store_backlog": _Spec(_parse_int, _int_range(0)),  # 0: off
    "overload_queue_age": _Spec(_parse_seconds, _seconds(allow_zero=True)),  # 0: off
    "overload_retry_after": _SECONDS,
}
# How an error names a key that only the config file can give.
_FILE_NAMES: Final = {"pools": "[[pools]]", "tenants": "[tenants]"}
