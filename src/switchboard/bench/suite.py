"""Every scenario of ``switchboard bench``: ``runs.Bench``'s own (E0–E3, RSS) and those kept in
modules of their own, which build on ``runs`` (E4 ``e4.py``, E5 ``e5.py``): they are wired here,
above all three, so that ``runs`` never imports them back."""

from __future__ import annotations

from collections.abc import Callable

from switchboard.bench.e4 import E4
from switchboard.bench.e5 import E5
from switchboard.bench.runs import Bench


class Suite(Bench):
    """``Bench`` with E4 and E5."""

    def _scenario(self, name: str) -> Callable[[], None]:
        if name == "e4":
            return E4(self).run
        if name == "e5":
            return E5(self).run
        return super()._scenario(name)
