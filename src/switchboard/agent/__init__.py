"""The node agent: connects a GPU node's models to a Switchboard scheduler (contract §1).

- :class:`Backend` is the interface a model implements (``run(job, partials) -> Result``);
- :class:`PseudoTranslateBackend` is the stand-in backend (not a real model) for demos/tests;
- :class:`NodeAgent` speaks the node channel: registration, heartbeats, jobs, cancellation,
  capacity, reconnection with backoff, draining;
- :func:`run_agent` runs one agent as a process (signals, exit status).

See docs/agent.md.
"""

from switchboard.agent.agent import NODE_BUSY, AgentConfig, AgentStats, NodeAgent
from switchboard.agent.backends import (
    Backend,
    BackendError,
    Job,
    PartialSink,
    Result,
    load_backend,
)
from switchboard.agent.pseudo import LatencyModel, PseudoTranslateBackend
from switchboard.agent.runner import run_agent

__all__ = [
    "NODE_BUSY",
    "AgentConfig",
    "AgentStats",
    "Backend",
    "BackendError",
    "Job",
    "LatencyModel",
    "NodeAgent",
    "PartialSink",
    "PseudoTranslateBackend",
    "Result",
    "load_backend",
    "run_agent",
]
