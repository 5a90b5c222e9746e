"""Tenants and priority classes: who a session schedules as, and what each tenant holds.

Pure bookkeeping for the waiting line's fair queueing (``waiting.py``) and for admission
shedding, with no clock and no I/O.

* A **tenant** groups sessions for fairness (issue 14 item 3, protocol.md §2.4).  A
  session authenticated with a tenant's token is that tenant; otherwise it is the
  ``tenant_id`` of its ``session_init``; otherwise the default tenant (``DEFAULT_TENANT``).
  Tenants come from the config file (``[tenants.<name>]``: ``weight``, ``token``,
  ``priority``, ``max_priority``); a ``tenant_id`` not in it is tracked with weight 1, while
  any of its sessions is open, up to ``max_tenants`` tenants at once.  Past the bound a new
  unknown ``tenant_id`` schedules as the default tenant (so does an empty one, or one longer
  than ``MAX_NAME`` characters): the bound keeps clients from growing the table, and refusing
  would break Lingua clients, for whom ``tenant_id`` is only a key.
* A **priority class** is a small integer, higher first (``PRIORITY_MIN``..``PRIORITY_MAX``,
  default 0; ``low``/``normal``/``high`` name -1/0/1): ``features.priority`` of the
  ``session_init``, capped at the tenant's ``max_priority``, else the tenant's ``priority``.
* ``held`` counts a tenant's accepted, unanswered jobs (waiting, being placed or running):
  ``Tenants.below_share`` says whether a tenant holds less than its weighted share of them,
  so that saturation sheds the tenants above their share and spares the others.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from switchboard.runtime.tenant_config import (
    DEFAULT_TENANT,
    MAX_NAME,
    MAX_WEIGHT,
    TenantConfigInvalid,
    TenantSpec,
    parse_tenant_tables,
)

__all__ = [
    "DEFAULT_TENANT",
    "MAX_NAME",
    "MAX_WEIGHT",
    "Tenant",
    "TenantConfigInvalid",
    "TenantSpec",
    "Tenants",
    "Unauthorized",
    "authenticate",
    "parse_tenant_tables",
]


class Unauthorized(Exception):
    """A session's token does not let it in (or not as the tenant it names)."""


def authenticate(
    token: str | None,
    tenant_id: str | None,
    *,
    session_token: str | None,
    specs: Iterable[TenantSpec],
) -> str | None:
    """The tenant a ``session_init``'s token pins (``None``: none), or ``Unauthorized``.

    A token is required once ``--session-token`` or any tenant's token is set; any of them
    lets a session in.  A tenant's token makes the session that tenant, whatever its
    ``tenant_id`` says (which is still relayed to nodes); a session without it may not name a
    tenant that has a token.  Every token is compared in constant time, all of them always.
    """
    given = None if token is None else token.encode()
    pinned: str | None = None
    required = session_token is not None
    protected: set[str] = set()
    for spec in specs:
        if spec.token is None:
            continue
        required = True
        protected.add(spec.name)
        if given is not None and hmac.compare_digest(given, spec.token.encode()):
            pinned = spec.name
    plain = (
        session_token is not None
        and given is not None
        and hmac.compare_digest(given, session_token.encode())
    )
    if required and pinned is None and not plain:
        raise Unauthorized("missing or wrong session token")
    if pinned is None and tenant_id in protected:
        raise Unauthorized(f"tenant {tenant_id!r} needs its own token")
    return pinned


class Tenant:
    """One tenant's weight, classes and live counts (mutable; shared by its sessions)."""

    __slots__ = (
        "configured",
        "cost",
        "held",
        "max_priority",
        "name",
        "priority",
        "sessions",
        "weight",
    )

    def __init__(self, spec: TenantSpec, *, configured: bool) -> None:
        self.name = spec.name
        self.weight = spec.weight
        self.cost = 1.0 / spec.weight  # virtual time one job costs (waiting.py)
        self.priority = spec.priority
        self.max_priority = spec.max_priority
        self.configured = configured
        self.sessions = 0  # open sessions scheduling as this tenant
        self.held = 0  # accepted, unanswered jobs

    def __repr__(self) -> str:
        return f"Tenant({self.name!r}, weight={self.weight:g}, held={self.held})"


class Tenants:
    """The tenants tracked now, and the counts behind ``below_share``."""

    def __init__(self, specs: Iterable[TenantSpec] = (), *, max_tenants: int = 1000) -> None:
        self._specs = {spec.name: spec for spec in specs}
        default = self._specs.get(DEFAULT_TENANT, TenantSpec(name=DEFAULT_TENANT))
        # An unknown tenant_id has weight 1 and the default tenant's classes.
        self._unknown = TenantSpec(
            name="", priority=default.priority, max_priority=default.max_priority
        )
        self._max = max(max_tenants, len(self._specs) + 1)
        self._live: dict[str, Tenant] = {
            name: Tenant(spec, configured=True) for name, spec in self._specs.items()
        }
        self.default = self._live.get(DEFAULT_TENANT) or Tenant(default, configured=True)
        self._live[DEFAULT_TENANT] = self.default
        self.total_held = 0
        self._class_held: dict[int, int] = {}  # priority class → jobs held
        self.active_weight = 0.0  # the weights of the tenants holding jobs

    def __len__(self) -> int:
        return len(self._live)

    def get(self, name: str) -> Tenant | None:
        return self._live.get(name)

    def join(self, name: str | None) -> Tenant:
        """A session opened as ``name`` (``None``, empty or longer than ``MAX_NAME``
        characters: the default tenant, so a client cannot make the table hold long keys)."""
        if not name or len(name) > MAX_NAME:
            tenant: Tenant | None = self.default
        else:
            tenant = self._live.get(name)
        if tenant is None:
            if len(self._live) >= self._max:
                tenant = self.default  # past the bound: see the module docstring
            else:
                spec = TenantSpec(
                    name=name or DEFAULT_TENANT,
                    priority=self._unknown.priority,
                    max_priority=self._unknown.max_priority,
                )
                tenant = self._live[spec.name] = Tenant(spec, configured=False)
        tenant.sessions += 1
        return tenant

    def leave(self, tenant: Tenant) -> None:
        """One of its sessions closed: an unknown tenant with none left is forgotten."""
        tenant.sessions -= 1
        if tenant.sessions <= 0 and tenant.held <= 0:
            self._forget(tenant)

    def _forget(self, tenant: Tenant) -> None:
        if not tenant.configured and self._live.get(tenant.name) is tenant:
            del self._live[tenant.name]

    @staticmethod
    def class_of(tenant: Tenant, requested: int | None) -> int:
        """A session's priority class: what it asked for, capped, else its tenant's."""
        if requested is None:
            return tenant.priority
        return min(requested, tenant.max_priority)

    def hold(self, tenant: Tenant, priority: int = 0) -> None:
        """One more accepted job of ``tenant``, in class ``priority``."""
        if tenant.held == 0:
            self.active_weight += tenant.weight
        tenant.held += 1
        self.total_held += 1
        self._class_held[priority] = self._class_held.get(priority, 0) + 1

    def drop(self, tenant: Tenant, priority: int = 0) -> None:
        """One of ``tenant``'s jobs (class ``priority``) is answered or dropped."""
        left = self._class_held[priority] - 1
        if left:
            self._class_held[priority] = left
        else:
            del self._class_held[priority]
        tenant.held -= 1
        self.total_held -= 1
        if tenant.held == 0:
            self.active_weight -= tenant.weight
            if self.total_held == 0:
                self.active_weight = 0.0  # no float drift survives an idle moment
            if tenant.sessions <= 0:
                self._forget(tenant)

    def above_lowest_class(self, priority: int) -> bool:
        """Whether a class lower than ``priority`` holds jobs now: saturation sheds the lowest
        classes first, so a higher class is not shed while a lower one is held (issue 14;
        core ``_shed``).  At most one entry per class held (19 classes in all)."""
        return any(held_class < priority for held_class in self._class_held)

    def below_share(self, tenant: Tenant) -> bool:
        """Whether ``tenant`` holds strictly less than its weighted share of the jobs held now
        (a tenant holding none is, while anyone holds some): saturation does not shed it, so
        a tenant with a burst is shed and the others are not (issue 14; core ``_shed``).
        Alone, or level with everyone, no tenant is below its share: all are shed alike."""
        return tenant.held * self.active_weight < self.total_held * tenant.weight * (1 - 1e-9)
