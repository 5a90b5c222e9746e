"""Tenants (dispatch/tenants.py): config tables, authentication, the bound, shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.config import Settings, load_settings
from switchboard.dispatch.tenants import (
    DEFAULT_TENANT,
    TenantConfigInvalid,
    Tenants,
    TenantSpec,
    Unauthorized,
    authenticate,
    parse_tenant_tables,
)
from switchboard.errors import ConfigError, ProtocolError
from switchboard.protocol.profile import parse_priority, priority_of

GOLD = TenantSpec(name="gold", weight=3.0, priority=1, token="gold-secret")
FREE = TenantSpec(name="free", priority=-1, max_priority=0)


def test_tables_parse_with_defaults_and_names_for_classes() -> None:
    """A table's keys are checked; omitted ones take their defaults; classes may be names."""
    specs = parse_tenant_tables(
        {"gold": {"weight": 3, "token": "t", "priority": "high"}, "free": {}}
    )
    assert specs == (
        TenantSpec(name="gold", weight=3.0, priority=1, token="t"),
        TenantSpec(name="free"),
    )


@pytest.mark.parametrize(
    ("tables", "fragment"),
    [
        ({"a": {"weight": 0}}, "weight must be in"),
        ({"a": {"weight": True}}, "weight must be a number"),
        ({"a": {"priority": 10}}, "priority is an integer from -9 to 9"),
        ({"a": {"priority": 1, "max_priority": 0}}, "max_priority is below priority"),
        ({"a": {"wieght": 2}}, "unknown key 'wieght'"),
        ({"a": {"token": "x"}, "b": {"token": "x"}}, "another tenant's"),
        ({"a": 3}, "must be a table"),
    ],
)
def test_bad_tables_are_refused_with_a_reason(tables: dict[str, object], fragment: str) -> None:
    with pytest.raises(TenantConfigInvalid, match=fragment):
        parse_tenant_tables(tables)


def test_priority_from_features() -> None:
    """features.priority: an integer in range or a name; anything else is INVALID_MESSAGE."""
    assert priority_of(None) is None
    assert priority_of({"other": 1}) is None
    assert priority_of({"priority": 3}) == 3
    assert priority_of({"priority": "LOW"}) == -1
    assert parse_priority(-9) == -9
    for bad in (10, True, "urgent", 1.5):
        with pytest.raises(ProtocolError) as caught:
            priority_of({"priority": bad})
        assert caught.value.code == "INVALID_MESSAGE"


def test_config_file_tenants_and_their_tokens_stay_hidden(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[tenants.gold]\nweight = 3\ntoken = "gold-secret"\n[tenants.default]\npriority = -1\n'
    )
    settings = load_settings({"priority_aging": "0.25"}, environ={}, config_path=str(path))
    assert [s.name for s in settings.tenants] == ["gold", "default"]
    assert settings.priority_aging == 0.25
    assert "gold-secret" not in repr(settings)
    assert "gold-secret" not in str(settings.public_view())


def test_a_bad_tenant_table_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[tenants.gold]\nweight = -1\ntoken = "gold-secret"\n')
    with pytest.raises(ConfigError, match=r"weight must be") as caught:
        load_settings({}, environ={}, config_path=str(path))
    assert "gold-secret" not in str(caught.value)


def test_tenant_tokens_protect_a_public_host_and_must_differ_from_the_session_token() -> None:
    """A tenant's token authenticates sessions, so it stands in for --session-token."""
    Settings(host="0.0.0.0", node_token="n", admin_token="a", tenants=(GOLD,))
    with pytest.raises(ConfigError, match="--session-token"):
        Settings(host="0.0.0.0", node_token="n", admin_token="a")
    with pytest.raises(ConfigError, match="must differ"):
        Settings(session_token="gold-secret", tenants=(GOLD,))


def test_authentication() -> None:
    """Any configured token lets a session in; a tenant's token pins the tenant; a tenant
    with a token cannot be claimed by tenant_id alone."""
    specs = (GOLD, FREE)
    assert authenticate("gold-secret", None, session_token="s", specs=specs) == "gold"
    assert authenticate("gold-secret", "free", session_token=None, specs=specs) == "gold"
    assert authenticate("s", "free", session_token="s", specs=specs) is None
    assert authenticate(None, "anyone", session_token=None, specs=(FREE,)) is None
    with pytest.raises(Unauthorized, match="missing or wrong"):
        authenticate(None, None, session_token=None, specs=specs)  # a tenant token is set
    with pytest.raises(Unauthorized, match="missing or wrong"):
        authenticate("wrong", None, session_token="s", specs=())
    with pytest.raises(Unauthorized, match="needs its own token"):
        authenticate("s", "gold", session_token="s", specs=specs)


def test_sessions_join_configured_unknown_and_default_tenants() -> None:
    tenants = Tenants((GOLD, FREE))
    assert tenants.join(None) is tenants.default
    assert tenants.default.name == DEFAULT_TENANT
    gold = tenants.join("gold")
    assert (gold.weight, gold.priority) == (3.0, 1)
    stranger = tenants.join("stranger")
    assert (stranger.weight, stranger.priority, stranger.configured) == (1.0, 0, False)
    assert tenants.join("stranger") is stranger  # one record for all its sessions


def test_empty_and_overlong_tenant_ids_are_the_default_tenant() -> None:
    tenants = Tenants()
    assert tenants.join("") is tenants.default
    assert tenants.join("x" * 129) is tenants.default
    assert tenants.join("x" * 128).name == "x" * 128
    assert tenants.default.name == DEFAULT_TENANT and len(tenants) == 2


def test_an_unknown_tenant_takes_the_default_tables_classes() -> None:
    tenants = Tenants((TenantSpec(name=DEFAULT_TENANT, weight=5, priority=-2, max_priority=0),))
    stranger = tenants.join("stranger")
    assert (stranger.weight, stranger.priority, stranger.max_priority) == (1.0, -2, 0)


def test_classes_are_capped_by_the_tenant() -> None:
    tenants = Tenants((FREE,))
    free = tenants.join("free")
    assert tenants.class_of(free, None) == -1
    assert tenants.class_of(free, 5) == 0  # capped at max_priority
    assert tenants.class_of(free, -4) == -4  # lowering is always allowed


def test_unknown_tenants_are_bounded_and_forgotten_when_idle() -> None:
    """Past max_tenants a new unknown tenant schedules as the default one; an unknown tenant
    with no session and no job left is forgotten, so its place is free again."""
    tenants = Tenants((GOLD,), max_tenants=4)  # gold, default and two more
    a, b = tenants.join("a"), tenants.join("b")
    assert tenants.join("c") is tenants.default
    assert len(tenants) == 4
    tenants.hold(a)
    tenants.leave(a)
    assert tenants.get("a") is a  # still holds a job
    tenants.drop(a)
    assert tenants.get("a") is None
    assert tenants.join("c").name == "c"
    tenants.leave(b)
    tenants.leave(tenants.join("gold"))
    assert tenants.get("gold") is not None  # configured tenants stay


def test_below_share_names_the_tenants_under_their_weighted_share() -> None:
    """What saturation spares (core ``shed_refusal``): a tenant holding strictly less than its
    weighted share of the held jobs; not one at its share, and nobody when alone."""
    tenants = Tenants((GOLD,))
    gold, small = tenants.join("gold"), tenants.join("small")
    for _ in range(3):
        tenants.hold(gold)
    tenants.hold(small)
    # weights 3 and 1: shares 3 and 1 of 4 held, each exactly at its share
    assert not tenants.below_share(gold) and not tenants.below_share(small)
    tenants.hold(small)  # small holds 2 of 5, above its fifth... gold 3 of 5, below 3/4
    assert tenants.below_share(gold) and not tenants.below_share(small)
    for _ in range(2):
        tenants.drop(small)
    assert not tenants.below_share(gold)  # alone: exactly its share
    assert tenants.below_share(small)  # holds nothing while gold holds some
