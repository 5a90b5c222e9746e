"""``switchboard node``: flags → an :class:`AgentConfig` and a backend → :func:`run_agent`."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from switchboard.agent.agent import AgentConfig
from switchboard.agent.backends import Backend, load_backend
from switchboard.agent.pseudo import LatencyModel, PseudoTranslateBackend
from switchboard.agent.runner import run_agent
from switchboard.protocol import langs


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeOptions:
    url: Sequence[str]
    pairs: Sequence[str]
    services: str
    max_concurrency: int
    node_id: str | None
    token: str | None
    heartbeat_interval: float
    reconnect_max: float
    drain_timeout: float
    backend: str
    latency_median: float
    latency_p99: float
    seed: int | None
    partials: bool
    log_level: str


def parse_pair(text: str) -> tuple[str, str]:
    """``en:de`` → ``("en", "de")``, normalised as the scheduler does (contract §2)."""
    src, sep, tgt = text.partition(":")
    if not sep or not src.strip() or not tgt.strip():
        raise ValueError(f"--pair {text!r} is not of the form SRC:TGT (e.g. en:de)")
    return langs.normalize(src), langs.normalize(tgt)


def split_urls(given: Sequence[str]) -> tuple[str, ...]:
    """Each ``--url`` (or the list from SWITCHBOARD_NODE_URL or the config file) may itself
    hold several, separated by commas or spaces; duplicates are dropped, order kept."""
    urls = (url for value in given for url in value.replace(",", " ").split())
    return tuple(dict.fromkeys(urls))


def build(options: NodeOptions) -> tuple[AgentConfig, Backend]:
    """The agent's configuration and backend; ``ValueError`` with a message for the user."""
    services = tuple(s.strip().lower() for s in options.services.split(",") if s.strip())
    if not services:
        raise ValueError("--services needs at least one service (asr,nmt,tts)")
    urls = split_urls(options.url)
    if not urls:
        raise ValueError("--url needs at least one scheduler URL")
    config = AgentConfig(
        url=urls[0],
        more_urls=urls[1:],
        pairs=tuple(dict.fromkeys(parse_pair(p) for p in options.pairs)),
        services=services,
        max_concurrency=options.max_concurrency,
        node_id=options.node_id,
        token=options.token,
        heartbeat_interval=options.heartbeat_interval,
        reconnect_max=options.reconnect_max,
        drain_timeout=options.drain_timeout,
    )
    if options.backend == "pseudo":
        latency = LatencyModel(options.latency_median, options.latency_p99, options.seed)
        return config, PseudoTranslateBackend(latency=latency, partials=options.partials)
    # As `python -m` and uvicorn do: a backend module in the current directory is found.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return config, load_backend(options.backend)


def run_node(options: NodeOptions) -> int:
    """Run a node until SIGTERM; prints one line to stdout each time it registers."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        level=options.log_level.upper(),
    )
    try:
        config, backend = build(options)
    except ValueError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return 2

    def registered(node_id: str, url: str) -> None:
        # One machine-readable line per (re)registration, for wrappers, tests and the demo.
        print(f"switchboard node {node_id} registered with {url}", flush=True)

    return run_agent(config, backend, on_registered_with=registered)
