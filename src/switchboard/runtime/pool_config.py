"""Configured pools as the operator writes them: one parser for every way in (protocol.md §5).

Pools reach a scheduler three ways, and all three go through :func:`parse_pools_body` or
:func:`parse_pool_tables`, so they accept and refuse exactly the same things with the same
messages:

- the body of ``PUT /api/v1/pools`` (§4), ``{"pools": [{pool_id, name, languages,
  required_services}]}``;
- ``[[pools]]`` tables in the TOML config file (§6, read by :mod:`switchboard.config`);
- the configuration the Redis store keeps for every instance (``store/pool_config.py``), which
  is that same body with a ``revision`` beside ``pools``.

Pure code (msgspec and the frozen :class:`Pool`), so it sits in the runtime domain beside
``Pool`` and the settings, the store and the server may all import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from switchboard.protocol import langs
from switchboard.runtime.values import Pool

__all__ = [
    "PoolConfigInvalid",
    "PoolSpec",
    "PoolsBody",
    "encode_pools_body",
    "parse_pool_tables",
    "parse_pools_body",
    "pool_specs",
]


class PoolConfigInvalid(ValueError):
    """Pools that cannot be configured; the text is the reason, fit to show the operator."""


class PoolSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One pool of the body.  Unknown fields are ignored (contract preamble), so the output of
    ``GET /api/v1/pools``, with its ``members``, can be sent back as it is."""

    pool_id: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    languages: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)
    ]
    required_services: list[str] = []


class PoolsBody(msgspec.Struct, frozen=True):
    pools: list[PoolSpec]


def parse_pools_body(body: bytes) -> tuple[Pool, ...]:
    """The pools of a ``PUT /api/v1/pools`` body (JSON), or :class:`PoolConfigInvalid`."""
    try:
        parsed = msgspec.json.decode(body, type=PoolsBody)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise PoolConfigInvalid(str(exc)) from None
    return _pools(parsed)


def parse_pool_tables(tables: Any) -> tuple[Pool, ...]:
    """The pools of the TOML file's ``[[pools]]`` (already loaded: a list of tables), checked
    as the body ``{"pools": tables}`` would be, so an error names the same path
    (``$.pools[0].pool_id``)."""
    try:
        # strict: "1" is not a pool id here either, as it is not in JSON.
        parsed = msgspec.convert({"pools": tables}, type=PoolsBody, strict=True)
    except msgspec.ValidationError as exc:
        raise PoolConfigInvalid(str(exc)) from None
    return _pools(parsed)


def _pools(parsed: PoolsBody) -> tuple[Pool, ...]:
    ids = [p.pool_id for p in parsed.pools]
    if len(set(ids)) != len(ids):
        raise PoolConfigInvalid("pool_id values must be unique")
    return tuple(
        Pool(
            p.pool_id,
            p.name,
            frozenset(langs.normalize(c) for c in p.languages),
            frozenset(s.lower() for s in p.required_services),
        )
        for p in parsed.pools
    )


def pool_specs(pools: Sequence[Pool]) -> list[dict[str, object]]:
    """The pools as the body lists them (sorted codes: a set has no order of its own)."""
    return [pool.to_json() for pool in pools]


def encode_pools_body(pools: Sequence[Pool]) -> bytes:
    """``{"pools": [...]}``: what :func:`parse_pools_body` reads back as the same pools."""
    return msgspec.json.encode({"pools": pool_specs(pools)})
