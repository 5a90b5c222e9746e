"""What the benchmark plugs into ``switchboard serve`` through ``ServeHooks``.

``--design global_lock`` (the model of the old design, ``switchboard.legacy``), ``--design null``
(the server with no scheduling, ``bench/null_design.py``) and ``--record
FILE`` (the session recorder) are serve flags, but the server never imports either: the command
line turns them into hooks here.
"""

from __future__ import annotations

import dataclasses

from switchboard.config import Settings
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.server.observe import SessionObserver
from switchboard.server.runner import ServeHooks


def tool_hooks(settings: Settings, base: ServeHooks | None = None) -> ServeHooks:
    """``base`` (default hooks if None) with the design and the recorder the settings name."""
    hooks = base or ServeHooks()
    if settings.design == "global_lock":
        from switchboard.legacy import global_lock_design

        hooks = dataclasses.replace(hooks, design=global_lock_design)
    elif settings.design == "null":
        from switchboard.bench.null_design import null_design

        hooks = dataclasses.replace(hooks, design=null_design)
    path = settings.record
    if path is not None:
        from switchboard.bench.record import SessionRecorder

        def observe(snapshots: SnapshotHolder) -> SessionObserver:
            return SessionRecorder(path, snapshots=snapshots)

        hooks = dataclasses.replace(hooks, observe=observe)
    return hooks
