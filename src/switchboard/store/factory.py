"""Open the stores the settings name (``--store``, ``--redis-url``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchboard.config import Settings
from switchboard.store.base import ReservationStore
from switchboard.store.memory import MemoryStore
from switchboard.store.pool_config import MemoryPoolConfig, PoolConfigStore

if TYPE_CHECKING:
    from switchboard.store.cluster import ClusterStore


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


def open_cluster(settings: Settings) -> ClusterStore | None:
    """The cluster's store (instances on one Redis namespace); ``None`` on the embedded store,
    where an instance is alone and pays nothing for the cluster."""
    if settings.store != "redis":
        return None
    from switchboard.store.cluster import ClusterStore

    return ClusterStore.from_url(settings.redis_url, namespace=settings.redis_namespace)
