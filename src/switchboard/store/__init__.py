"""Reservation stores: the final word on how many jobs a node runs at once (seed §6 step 9)."""

from __future__ import annotations

from switchboard.store.base import Candidate, ReservationStore

__all__ = ["Candidate", "ReservationStore"]
