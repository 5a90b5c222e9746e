"""Switchboard: a scheduler for real-time speech translation networks.

The package is laid out by the domains of the design (docs/architecture.md):

- ``protocol``   wire contract v1: typed messages, codes, language normalisation
- ``management`` nodes, pools and the language index behind one management lock
- ``runtime``    the frozen ``RuntimeSnapshot`` that dispatch reads without a lock
- ``sessions``   per-session state behind one small lock per session
- ``dispatch``   the job lifecycle: choose, reserve, assign, time out, retry, answer in order
- ``store``      reservation stores (in-process and Redis) behind one interface
- ``server``     the aiohttp WebSocket and HTTP front end
"""

# The one place the version is written: pyproject.toml reads it (dynamic = ["version"]).
__version__ = "0.1.0"

# The name on the package index (`switchboard` there is an unrelated project); the command and
# this import package keep `switchboard`.  The CLI names it when an extra is missing.
DISTRIBUTION = "switchboard-scheduler"
