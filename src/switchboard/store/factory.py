"""Open the store the settings name (``--store``, ``--redis-url``)."""

from __future__ import annotations

from switchboard.config import Settings
from switchboard.store.base import ReservationStore
from switchboard.store.memory import MemoryStore


def open_store(settings: Settings) -> ReservationStore:
    if settings.store == "redis":
        from switchboard.store.redis_store import RedisStore  # only load redis-py when used

        return RedisStore.from_url(settings.redis_url, namespace=settings.redis_namespace)
    return MemoryStore()
