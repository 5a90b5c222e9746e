"""Settings and load_settings: protocol.md §6 defaults, precedence, parsing, and security rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from switchboard import config
from switchboard.config import Settings, is_loopback_host, load_settings
from switchboard.errors import ConfigError

SECRET = "tok-Zq9-DO-NOT-LEAK-7731"
ALL_TOKENS = {"node_token": SECRET, "session_token": SECRET, "admin_token": SECRET}


def load(
    flags: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    toml: str | None = None,
    tmp_path: Path | None = None,
) -> Settings:
    path = None
    if toml is not None:
        assert tmp_path is not None
        file = tmp_path / "switchboard.toml"
        file.write_text(toml)
        path = str(file)
    return load_settings(flags or {}, environ=env or {}, config_path=path)


def test_defaults_are_those_of_section_6() -> None:
    """Nothing given: every §6 default (and the documented extension defaults)."""
    s = load()
    assert (s.host, s.port, s.store, s.redis_url) == (
        "127.0.0.1",
        5010,
        "memory",
        "redis://127.0.0.1:6379/0",
    )
    assert (s.heartbeat_interval, s.job_timeout, s.pending_timeout) == (15.0, 30.0, 10.0)
    assert (s.max_attempts, s.default_max_concurrency, s.max_pending_per_session) == (3, 4, 64)
    assert s.max_frame_bytes == 8388608
    assert (s.node_token, s.session_token, s.admin_token, s.insecure) == (None, None, None, False)
    assert (s.reservation_lease, s.session_outbox_limit, s.handshake_timeout) == (15.0, 1024, 10.0)
    assert (s.log_level, s.redis_namespace, s.snapshot_min_interval) == (
        "info",
        "switchboard",
        0.005,
    )
    assert s == Settings()


def test_every_field_has_a_spec() -> None:
    """The parsing table and the dataclass cannot drift apart."""
    assert set(config._SPECS) == {f.name for f in dataclasses.fields(Settings)}


def test_settings_are_frozen() -> None:
    """Read once at start-up, never changed after."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "flag", "env", "file", "expect_flag", "expect_env", "expect_file"),
    [
        ("port", "7001", "7002", "7003", 7001, 7002, 7003),
        ("job_timeout", "1.5", "2.5", "3.5", 1.5, 2.5, 3.5),
        ("log_level", "debug", "warning", '"error"', "debug", "warning", "error"),
        ("max_attempts", 5, "6", "7", 5, 6, 7),
    ],
)
def test_precedence_flag_env_file_default(
    tmp_path: Path,
    key: str,
    flag: object,
    env: str,
    file: str,
    expect_flag: object,
    expect_env: object,
    expect_file: object,
) -> None:
    """§6: a flag beats the environment, which beats the file, which beats the default."""
    toml = f"{key} = {file}\n"
    env_map = {"SWITCHBOARD_" + key.upper(): env}
    assert getattr(load({key: flag}, env_map, toml, tmp_path), key) == expect_flag
    assert getattr(load({}, env_map, toml, tmp_path), key) == expect_env
    assert getattr(load({}, {}, toml, tmp_path), key) == expect_file
    assert getattr(load(), key) == getattr(Settings(), key)


def test_none_flag_means_not_given() -> None:
    """A flag left at None must not hide the environment."""
    assert load({"port": None}, {"SWITCHBOARD_PORT": "6000"}).port == 6000


def test_config_path_from_environment(tmp_path: Path) -> None:
    """SWITCHBOARD_CONFIG names the file like --config does; an explicit path wins."""
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("port = 1111\n")
    b.write_text("port = 2222\n")
    env = {"SWITCHBOARD_CONFIG": str(a)}
    assert load_settings({}, environ=env).port == 1111
    assert load_settings({}, environ=env, config_path=str(b)).port == 2222


@pytest.mark.parametrize("raw", ["0.5", " 0.5 ", ".5", 0.5])
def test_times_accept_fractions(raw: object) -> None:
    """§6: `--job-timeout 0.5`."""
    assert load({"job_timeout": raw}).job_timeout == 0.5
    assert load(env={"SWITCHBOARD_PENDING_TIMEOUT": "0.25"}).pending_timeout == 0.25


def test_toml_integer_is_accepted_for_seconds(tmp_path: Path) -> None:
    """`job_timeout = 5` in a file is five seconds, not a type error."""
    s = load(toml="job_timeout = 5\nheartbeat_interval = 0.5\n", tmp_path=tmp_path)
    assert (s.job_timeout, s.heartbeat_interval) == (5.0, 0.5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(w, True) for w in ("1", "true", "yes", "on", "TRUE", "On")]
    + [(w, False) for w in ("0", "false", "no", "off", "False", "OFF")],
)
def test_bool_words(raw: str, expected: bool) -> None:
    """Booleans from the environment accept 1/true/yes/on and 0/false/no/off."""
    assert load(env={"SWITCHBOARD_INSECURE": raw}).insecure is expected


def test_bool_rejects_other_words() -> None:
    with pytest.raises(ConfigError, match="SWITCHBOARD_INSECURE"):
        load(env={"SWITCHBOARD_INSECURE": "maybe"})


def test_toml_native_bool(tmp_path: Path) -> None:
    assert load(toml="insecure = true\n", tmp_path=tmp_path).insecure is True


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    """A typo in the file is an error that names the key (and suggests the right one)."""
    with pytest.raises(ConfigError, match="job_timout") as info:
        load(toml="job_timout = 3\n", tmp_path=tmp_path)
    assert "job_timeout" in str(info.value)


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, environ={}, config_path=str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(toml="port = = 3\n", tmp_path=tmp_path)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"port": "70000"}, "--port"),
        ({"port": "-1"}, "--port"),
        ({"port": "http"}, "whole number"),
        ({"job_timeout": "abc"}, "--job-timeout"),
        ({"job_timeout": "0"}, "greater than 0"),
        ({"pending_timeout": "-2"}, "--pending-timeout"),
        ({"heartbeat_interval": "nan"}, "finite"),
        ({"heartbeat_interval": "inf"}, "finite"),
        ({"max_attempts": "0"}, "at least 1"),
        ({"default_max_concurrency": "0"}, "--default-max-concurrency"),
        ({"max_pending_per_session": "1.5"}, "whole number"),
        ({"max_frame_bytes": "0"}, "--max-frame-bytes"),
        ({"store": "postgres"}, "memory, redis"),
        ({"redis_url": "http://example"}, "redis://"),
        ({"log_level": "loud"}, "--log-level"),
        ({"host": ""}, "--host"),
        ({"redis_namespace": "a b"}, "--redis-namespace"),
        ({"snapshot_min_interval": "-0.1"}, "at least 0"),
    ],
)
def test_bad_values_are_config_errors(flags: dict[str, object], fragment: str) -> None:
    """Wrong types and out-of-range values are refused with a message naming the key."""
    with pytest.raises(ConfigError, match=fragment):
        load(flags)


def test_bad_value_names_its_source(tmp_path: Path) -> None:
    """The operator learns where the bad value came from."""
    with pytest.raises(ConfigError, match="SWITCHBOARD_PORT"):
        load(env={"SWITCHBOARD_PORT": "x"})
    with pytest.raises(ConfigError, match="port in "):
        load(toml='port = "x"\n', tmp_path=tmp_path)
    with pytest.raises(ConfigError, match="whole number"):
        load(toml="port = true\n", tmp_path=tmp_path)


def test_zero_port_and_zero_snapshot_interval_are_allowed() -> None:
    """Port 0 lets tests bind a free port; interval 0 turns coalescing off."""
    s = load({"port": "0", "snapshot_min_interval": "0"})
    assert (s.port, s.snapshot_min_interval) == (0, 0.0)


def test_direct_construction_is_validated() -> None:
    """A Settings built in code obeys the same rules as one from the command line."""
    with pytest.raises(ConfigError, match="--port"):
        Settings(port=99999)
    with pytest.raises(ConfigError, match="--job-timeout"):
        Settings(job_timeout=0)


def test_redis_url_implies_redis_store(tmp_path: Path) -> None:
    """§6: giving --redis-url implies --store redis, whatever its source."""
    assert load({"redis_url": "redis://r:6379/1"}).store == "redis"
    assert load(env={"SWITCHBOARD_REDIS_URL": "redis://r"}).store == "redis"
    assert load(toml='redis_url = "rediss://r"\n', tmp_path=tmp_path).store == "redis"
    assert load().store == "memory"


def test_explicit_memory_store_conflicts_with_redis_url(tmp_path: Path) -> None:
    """store=memory at the same or a higher source than the URL is a contradiction."""
    msg = "--store memory conflicts with --redis-url"
    with pytest.raises(ConfigError, match=msg):
        load({"store": "memory", "redis_url": "redis://r"})
    with pytest.raises(ConfigError, match=msg):
        load({"store": "memory"}, {"SWITCHBOARD_REDIS_URL": "redis://r"})
    with pytest.raises(ConfigError, match=msg):
        load(toml='store = "memory"\nredis_url = "redis://r"\n', tmp_path=tmp_path)


def test_lower_memory_store_is_overridden_by_redis_url(tmp_path: Path) -> None:
    """A memory store from a lower source yields to a URL given higher up."""
    toml = 'store = "memory"\n'
    assert load({"redis_url": "redis://r"}, toml=toml, tmp_path=tmp_path).store == "redis"
    assert load({"store": "redis", "redis_url": "redis://r"}).store == "redis"


def test_non_loopback_without_tokens_names_missing_tokens() -> None:
    """§6: a public --host without tokens refuses to start and says why."""
    with pytest.raises(ConfigError) as info:
        load({"host": "0.0.0.0", "admin_token": SECRET})
    message = str(info.value)
    assert "--node-token" in message and "--session-token" in message
    assert "--admin-token" not in message
    assert "--insecure" in message
    assert SECRET not in message


def test_non_loopback_with_insecure_is_allowed() -> None:
    assert load({"host": "0.0.0.0", "insecure": True}).insecure is True
    assert load({"host": "10.1.2.3"}, {"SWITCHBOARD_INSECURE": "yes"}).host == "10.1.2.3"


def test_non_loopback_with_all_tokens_is_allowed() -> None:
    s = load({"host": "0.0.0.0", **ALL_TOKENS})
    assert s.node_token == SECRET and not s.is_loopback


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "::1", "127.0.0.1", "127.8.9.10"])
def test_loopback_hosts_need_no_tokens(host: str) -> None:
    """localhost, ::1 and all of 127.0.0.0/8 count as loopback."""
    assert load({"host": host}).is_loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com", "128.0.0.1"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_ipv4_mapped_loopback() -> None:
    assert is_loopback_host("::ffff:127.0.0.1")


def test_empty_token_is_refused_without_echo() -> None:
    """An empty token (unset template variable) is an error, not 'no token'."""
    with pytest.raises(ConfigError, match="SWITCHBOARD_NODE_TOKEN"):
        load(env={"SWITCHBOARD_NODE_TOKEN": ""})


def test_tokens_never_shown() -> None:
    """repr, str and public_view never contain a token value."""
    s = load({"host": "0.0.0.0", **ALL_TOKENS})
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    view = s.public_view()
    assert SECRET not in repr(view)
    assert view["node_token"] == view["session_token"] == view["admin_token"] == "***"
    assert load().public_view()["node_token"] is None


def test_redis_password_never_shown() -> None:
    """The Redis URL's credentials are secrets too (style.md 7)."""
    s = load({"redis_url": f"redis://user:{SECRET}@r:6379/0?password={SECRET}"})
    assert SECRET not in repr(s)
    assert SECRET not in repr(s.public_view())
    assert s.redis_url.endswith(SECRET)  # the real value is intact for the store
    with pytest.raises(ConfigError) as info:
        load({"redis_url": f"http://user:{SECRET}@r"})
    assert SECRET not in str(info.value)


def test_wrongly_typed_token_in_file_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="node_token") as info:
        load(toml="node_token = 77311234\n", tmp_path=tmp_path)
    assert "77311234" not in str(info.value)


def test_unknown_flag_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load({"bogus": "1"})


def test_streaming_asr_reads_from_every_source(tmp_path: Path) -> None:
    """streaming_asr (lingua-parity §2): on by default; off from a flag, the environment or
    the file alike."""
    assert load().streaming_asr is True
    assert load({"streaming_asr": False}).streaming_asr is False
    assert load(env={"SWITCHBOARD_STREAMING_ASR": "off"}).streaming_asr is False
    assert load(toml="streaming_asr = false\n", tmp_path=tmp_path).streaming_asr is False
