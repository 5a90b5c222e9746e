"""Configured pools as configuration: `[[pools]]` in the TOML file is read by the parser of the
PUT /api/v1/pools body (protocol.md §4–§6), and `switchboard pools put` reads its file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from switchboard.cli import main
from switchboard.client.pools import PoolsFileError, api_url, format_table, read_pools_file
from switchboard.config import Settings, load_settings
from switchboard.errors import ConfigError
from switchboard.runtime.pool_config import (
    PoolConfigInvalid,
    encode_pools_body,
    parse_pool_tables,
    parse_pools_body,
)
from switchboard.runtime.values import Pool

TOML = """
port = 6010

[[pools]]
pool_id = 10
name = "euro"
languages = ["en", "DE"]
required_services = ["ASR"]

[[pools]]
pool_id = 3
name = "cjk"
languages = ["zh_CN", "en"]
"""
EURO = Pool(10, "euro", frozenset({"en", "de"}), frozenset({"asr"}))
CJK = Pool(3, "cjk", frozenset({"zh-cn", "en"}), frozenset())


def load_toml(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "switchboard.toml"
    path.write_text(text)
    return load_settings({}, environ=env or {}, config_path=str(path))


def test_pools_tables_are_loaded_in_order_and_normalised(tmp_path: Path) -> None:
    """[[pools]] become Settings.pools: the operator's order kept (it is the preference),
    codes normalised and services lower-cased as PUT does; other keys still load."""
    settings = load_toml(tmp_path, TOML)
    assert settings.pools == (EURO, CJK)
    assert settings.port == 6010


def test_no_pools_tables_means_generated_pools(tmp_path: Path) -> None:
    assert load_toml(tmp_path, "port = 6010\n").pools == ()
    assert load_toml(tmp_path, "pools = []\n").pools == ()
    assert Settings().pools == ()


# Each invalid case as `[[pools]]` TOML and as the same list in a PUT body.
INVALID: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "no-languages": ('pool_id = 1\nname = "x"\n', [{"pool_id": 1, "name": "x"}]),
    "empty-languages": (
        'pool_id = 1\nname = "x"\nlanguages = []\n',
        [{"pool_id": 1, "name": "x", "languages": []}],
    ),
    "id-not-int": (
        'pool_id = "1"\nname = "x"\nlanguages = ["en"]\n',
        [{"pool_id": "1", "name": "x", "languages": ["en"]}],
    ),
    "id-out-of-range": (
        'pool_id = 70000\nname = "x"\nlanguages = ["en"]\n',
        [{"pool_id": 70000, "name": "x", "languages": ["en"]}],
    ),
    "services-not-list": (
        'pool_id = 1\nname = "x"\nlanguages = ["en"]\nrequired_services = "asr"\n',
        [{"pool_id": 1, "name": "x", "languages": ["en"], "required_services": "asr"}],
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_table_is_refused_as_put_refuses_it(tmp_path: Path, case: str) -> None:
    """An invalid [[pools]] table is a ConfigError that names the file and gives the very
    message PUT /api/v1/pools gives for the same pool."""
    table, as_json = INVALID[case]
    with pytest.raises(PoolConfigInvalid) as put_error:
        parse_pools_body(json.dumps({"pools": as_json}).encode())
    with pytest.raises(ConfigError) as start_error:
        load_toml(tmp_path, "[[pools]]\n" + table)
    message = str(start_error.value)
    assert "[[pools]]" in message and "switchboard.toml" in message
    assert str(put_error.value) in message
    assert "$.pools[0]" in message


def test_duplicate_pool_ids_are_refused(tmp_path: Path) -> None:
    text = '[[pools]]\npool_id = 1\nname = "a"\nlanguages = ["en"]\n' * 2
    with pytest.raises(ConfigError, match="pool_id values must be unique"):
        load_toml(tmp_path, text)


def test_pools_must_be_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[pools\]\]"):
        load_toml(tmp_path, 'pools = "euro"\n')


def test_pools_come_from_the_file_only(tmp_path: Path) -> None:
    """No SWITCHBOARD_POOLS: a list of tables does not fit in a variable, and an unrelated
    variable of that name must not stop a start."""
    settings = load_toml(tmp_path, TOML, env={"SWITCHBOARD_POOLS": "garbage"})
    assert settings.pools == (EURO, CJK)


def test_direct_construction_checks_pools() -> None:
    with pytest.raises(ConfigError, match="unique"):
        Settings(pools=(EURO, EURO))


def test_public_view_shows_pools_as_the_api_does(tmp_path: Path) -> None:
    view = load_toml(tmp_path, TOML).public_view()
    assert view["pools"] == [EURO.to_json(), CJK.to_json()]


def test_body_encoding_round_trips() -> None:
    """What the store writes, the parser reads back as the same pools, in order."""
    assert parse_pools_body(encode_pools_body((CJK, EURO))) == (CJK, EURO)
    assert parse_pool_tables([]) == ()


def test_serve_with_an_invalid_pools_table_exits_2(tmp_path: Path) -> None:
    """`switchboard serve --config` with a bad [[pools]] table stops before the server with
    exit status 2 and a message naming the table's problem."""
    path = tmp_path / "bad.toml"
    path.write_text('[[pools]]\npool_id = 1\nname = "x"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "switchboard: error:" in result.output
    assert "[[pools]]" in result.output and "languages" in result.output


# --- `switchboard pools put FILE`: what is sent -------------------------------------------------


def test_put_file_json_body_is_sent_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "pools.json"
    path.write_bytes(b'{"pools": [{"pool_id": 1, "name": "x", "languages": ["en"]}]}')
    assert read_pools_file(str(path)) == path.read_bytes()


def test_put_file_list_as_printed_by_get_is_wrapped(tmp_path: Path) -> None:
    listed = [{"pool_id": 1, "name": "x", "languages": ["en"], "members": ["n1"]}]
    path = tmp_path / "pools.json"
    path.write_text(json.dumps(listed))
    body = read_pools_file(str(path))
    assert json.loads(body) == {"pools": listed}
    assert parse_pools_body(body) == (Pool(1, "x", frozenset({"en"}), frozenset()),)


def test_put_file_toml_sends_only_the_pools(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text(TOML)
    body = read_pools_file(str(path))
    assert set(json.loads(body)) == {"pools"}
    assert parse_pools_body(body) == (EURO, CJK)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("none.toml", "port = 1\n", r"no \[\[pools\]\]"),
        ("bad.toml", "pools = = 1\n", "not valid TOML"),
        ("bad.json", "{nope", "not valid JSON"),
    ],
)
def test_put_file_errors(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PoolsFileError, match=fragment):
        read_pools_file(str(path))
    with pytest.raises(PoolsFileError, match="cannot read"):
        read_pools_file(str(tmp_path / "missing.json"))


def test_put_with_an_unreadable_file_exits_2() -> None:
    result = CliRunner().invoke(main, ["pools", "put", "/nonexistent/pools.json"])
    assert result.exit_code == 2
    assert "cannot read" in result.output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5010", "http://127.0.0.1:5010/api/v1/pools"),
        ("ws://h:1/", "http://h:1/api/v1/pools"),
        ("wss://h/sb", "https://h/sb/api/v1/pools"),
        ("h:2", "http://h:2/api/v1/pools"),
    ],
)
def test_api_url(url: str, expected: str) -> None:
    assert api_url(url) == expected


def test_table_format() -> None:
    text = format_table(
        [{"pool_id": 10, "name": "euro", "languages": ["de", "en"], "members": ["a", "b"]}]
    )
    header, row = text.splitlines()
    assert header.split() == ["POOL_ID", "NAME", "LANGUAGES", "REQUIRED_SERVICES", "MEMBERS"]
    assert row.split() == ["10", "euro", "de,en", "-", "a,b"]
