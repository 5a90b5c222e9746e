"""Open the stores the settings name (``--store``, ``--redis-url``)."""

from __future__ import annotations

from switchboard.config import Settings
from switchboard.store.base import ReservationStore
from switchboard.store.memory import MemoryStore
from switchboard.store.pool_config import MemoryPoolConfig, PoolConfigStore


def open_store(settings: Settings) -> ReservationStore:
    if settings.store == "redis":
        from switchboard.store.redis_store import RedisStore  # only load redis-py when used

        return RedisStore.from_url(settings.redis_url, namespace=settings.redis_namespace)
    return MemoryStore()


def open_pool_config(settings: Settings) -> PoolConfigStore:
    """Where configured pools live: beside the reservations (store/pool_config.py)."""
    if settings.store == "redis":
        from switchboard.store.redis_pool_config import RedisPoolConfig

        return RedisPoolConfig.from_url(settings.redis_url, namespace=settings.redis_namespace)
    return MemoryPoolConfig()
