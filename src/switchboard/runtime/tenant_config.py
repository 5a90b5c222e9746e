"""The config file's ``[tenants.<name>]`` tables as values (protocol.md §2.4), beside the
pools' (``pool_config.py``): the settings read them and the dispatch core's tenant book
(``dispatch/tenants.py``) schedules by them, so they live below both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from switchboard.protocol.profile import PRIORITY_MAX, parse_priority

DEFAULT_TENANT: Final = "default"
MAX_WEIGHT: Final = 1000.0
MAX_NAME: Final = 128
_KEYS: Final = frozenset({"weight", "token", "priority", "max_priority"})


class TenantConfigInvalid(ValueError):
    """A ``[tenants.<name>]`` table that cannot be used; the text says why (never a token)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantSpec:
    """One ``[tenants.<name>]`` table of the config file."""

    name: str
    weight: float = 1.0
    priority: int = 0
    max_priority: int = PRIORITY_MAX
    token: str | None = field(default=None, repr=False)  # a secret: never shown

    def to_json(self) -> dict[str, object]:
        """For ``Settings.public_view``: the token as ``***``."""
        return {
            "name": self.name,
            "weight": self.weight,
            "priority": self.priority,
            "max_priority": self.max_priority,
            "token": None if self.token is None else "***",
        }


def parse_tenant_tables(raw: Mapping[str, object]) -> tuple[TenantSpec, ...]:
    """The ``[tenants.<name>]`` tables of a config file, checked."""
    specs: list[TenantSpec] = []
    tokens: set[str] = set()
    for name, table in raw.items():
        where = f"[tenants.{name}]"
        if not name or len(name) > MAX_NAME:
            raise TenantConfigInvalid(f"a tenant's name is 1-{MAX_NAME} characters, got {name!r}")
        if not isinstance(table, Mapping):
            raise TenantConfigInvalid(f"{where} must be a table")
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise TenantConfigInvalid(f"{where}: unknown key {unknown[0]!r}")
        weight = table.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise TenantConfigInvalid(f"{where}: weight must be a number, got {weight!r}")
        if not 0 < weight <= MAX_WEIGHT:
            raise TenantConfigInvalid(f"{where}: weight must be in (0, {MAX_WEIGHT:g}]")
        try:
            priority = parse_priority(table.get("priority", 0))
            max_priority = parse_priority(table.get("max_priority", PRIORITY_MAX))
        except ValueError as exc:
            raise TenantConfigInvalid(f"{where}: {exc}") from None
        if max_priority < priority:
            raise TenantConfigInvalid(f"{where}: max_priority is below priority")
        token = table.get("token")
        if token is not None and (not isinstance(token, str) or not token):
            raise TenantConfigInvalid(f"{where}: token must be a non-empty string")
        if token is not None:
            if token in tokens:
                raise TenantConfigInvalid(f"{where}: token is another tenant's too")
            tokens.add(token)
        specs.append(
            TenantSpec(
                name=name,
                weight=float(weight),
                priority=priority,
                max_priority=max_priority,
                token=token,
            )
        )
    return tuple(specs)
