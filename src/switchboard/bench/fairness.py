"""E5's fairness figures: the max-min fair share of a capacity, and Jain's index.

Fair share (weighted max-min, "water-filling"): raise every tenant's allocation in proportion to
its weight until the capacity is spent; a tenant whose offer is reached stops there and what it
leaves goes to the others.  With capacity C and offers o_i, weights w_i, the share is
f_i = min(o_i, w_i · λ), λ the level at which Σ f_i = C (or every offer is met, Σ f_i = Σ o_i).

Jain's index of served share vs fair share: with x_i = s_i / f_i (s_i what tenant i was served),
J = (Σ x_i)² / (n · Σ x_i²).  It is 1 when every tenant got the same fraction of its fair share,
and 1/n when one tenant got everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def max_min_fair(
    capacity: float, offers: Mapping[str, float], weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Each tenant's weighted max-min fair share of ``capacity`` (weights default to 1)."""
    weight = {name: (weights or {}).get(name, 1.0) for name in offers}
    if any(w <= 0 for w in weight.values()):
        raise ValueError("weights must be positive")
    share = dict.fromkeys(offers, 0.0)
    unmet = {name: max(offer, 0.0) for name, offer in offers.items()}
    left = max(capacity, 0.0)
    while unmet and left > 0:
        level = left / sum(weight[name] for name in unmet)
        met = {name: offer for name, offer in unmet.items() if offer <= level * weight[name]}
        if not met:
            for name in unmet:
                share[name] = level * weight[name]
            break
        for name, offer in met.items():
            share[name] = offer
            left -= offer
            del unmet[name]
    return share


def jain_index(values: Iterable[float]) -> float | None:
    """Jain's fairness index of ``values``; None without values or when all are zero."""
    xs = list(values)
    squares = sum(x * x for x in xs)
    if not xs or squares == 0:
        return None
    return sum(xs) ** 2 / (len(xs) * squares)


def served_vs_fair(served: Mapping[str, float], fair: Mapping[str, float]) -> float | None:
    """Jain's index of s_i / f_i over the tenants with a non-zero fair share."""
    return jain_index(served.get(name, 0.0) / share for name, share in fair.items() if share > 0)
