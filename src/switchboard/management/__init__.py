"""The management domain (seed §3): nodes, pool configuration and the language index.

Everything here is written under one management lock and read by nobody on the dispatch path:
dispatch reads the ``RuntimeSnapshot`` that this domain publishes after a structural change.
This package never imports ``switchboard.sessions`` or ``switchboard.dispatch`` (seed §7);
``tests/unit/test_deadlock_rules.py`` pins that.
"""
