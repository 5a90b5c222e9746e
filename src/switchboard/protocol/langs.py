"""Language codes (contract §2 "Binding"): normalise, and decide which listed code serves which.

``zh_CN`` → ``zh-cn``.  A listed code serves a requested code when they are equal or the listed
code is the requested code's primary subtag (``zh`` serves ``zh-cn``; ``zh-cn`` does not serve
``zh``).  ``auto`` as a source means "any source": only the target must be served.
"""

from __future__ import annotations

from functools import lru_cache

AUTO = "auto"


@lru_cache(maxsize=4096)
def normalize(code: str) -> str:
    """Lower case, ``_`` → ``-``, surrounding blanks dropped (cached: codes repeat endlessly)."""
    return code.strip().lower().replace("_", "-")


@lru_cache(maxsize=4096)
def lookup_keys(code: str) -> tuple[str, ...]:
    """The listed codes that serve ``code`` (already normalised): itself, then its prefixes."""
    parts = code.split("-")
    return tuple("-".join(parts[:i]) for i in range(len(parts), 0, -1))


def serves(listed: str, requested: str) -> bool:
    """Whether a node or pool listing ``listed`` serves ``requested`` (both normalised)."""
    return listed == requested or requested.startswith(listed + "-")
