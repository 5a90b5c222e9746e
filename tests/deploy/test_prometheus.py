"""The shipped Prometheus files against a real Prometheus (Debian's ``prometheus`` package):
``promtool`` accepts the alert rules; a Prometheus configured like deploy/prometheus scrapes a
real scheduler under real traffic, loads the rules healthy, and every query of the Grafana
dashboard is valid PromQL — the panels the operators' issue names (dispatch p99, error rate,
nodes by status, GPU use) with the values the traffic implies.  Grafana itself is not packaged
by Debian; it only runs these queries against this Prometheus (provisioned in compose.yaml).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.tools.procs import free_port
from tests.deploy.files import DEPLOY
from tests.e2e.harness import FakeNode, FakeSession, ServerProcess, scaled

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "switchboard.json"
MISSING = (
    "Debian's prometheus package is needed (promtool and prometheus): "
    "run scripts/setup.sh --prometheus"
)


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, MISSING
    return path


def test_promtool_accepts_the_alert_rules() -> None:
    done = subprocess.run(
        [_binary("promtool"), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[ServerProcess]:
    heartbeat = scaled(1.0)
    server = ServerProcess(
        ["--store", "memory", "--heartbeat-interval", str(heartbeat), "--pending-timeout", "0.3"],
        log_path=tmp_path / "serve.log",
        heartbeat_interval=heartbeat,
    )
    server.start()
    yield server
    server.terminate()


@pytest.fixture
def prometheus(tmp_path: Path, scheduler: ServerProcess) -> Iterator[Prometheus]:
    """A Prometheus set up as deploy/prometheus/prometheus.yml, pointed at ``scheduler`` and
    scraping every second (the shipped file scrapes every 5 s, too slow for a test)."""
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                **next(c for c in shipped["scrape_configs"] if c["job_name"] == "switchboard"),
                "scrape_interval": "1s",
                "static_configs": [{"targets": [f"{scheduler.host}:{scheduler.port}"]}],
            }
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            _binary("prometheus"),
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + scaled(30.0)
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        yield Prometheus(url)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _panel_queries() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries: dict[str, list[str]] = {}
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
        if exprs:
            queries[panel["title"]] = exprs
    return queries


def _all_have_data(prometheus: Prometheus, exprs: list[str]) -> bool:
    """Every query has a result that is a number (a rate over unchanged samples is NaN)."""
    for expr in exprs:
        result = prometheus.query(expr)
        if not result or any(sample["value"][1] == "NaN" for sample in result):
            return False
    return True


async def _scraped(prometheus: Prometheus) -> None:
    """Prometheus has scraped the scheduler once: the traffic after this is a change."""
    deadline = time.monotonic() + scaled(30.0)
    while not await asyncio.to_thread(prometheus.query, 'up{job="switchboard"} == 1'):
        assert time.monotonic() < deadline, "prometheus never scraped the scheduler"
        await asyncio.sleep(0.2)


async def _traffic(scheduler: ServerProcess) -> tuple[FakeNode, FakeSession]:
    node = FakeNode(scheduler.ws_url + "/ws/node", pairs=[("en", "de")])
    await node.connect()
    await node.register()
    await node.heartbeat()
    node.start_heartbeats(scheduler.heartbeat_interval / 4)
    await scheduler.wait_node_status(str(node.node_id), "ready")
    session = FakeSession(scheduler.ws_url + "/ws/session")
    await session.connect()
    await session.init()
    for index in range(10):
        await session.utter(index)
    await session.utter(10, tgt_lang="fr")  # no node serves en→fr: NO_AVAILABLE_NODE
    answers = [await session.wait_answer(index) for index in range(11)]
    assert [a["type"] for a in answers] == ["translation_result"] * 10 + ["error"], answers
    return node, session


async def test_the_dashboards_queries_and_the_rules_run_on_a_real_prometheus(
    scheduler: ServerProcess, prometheus: Prometheus
) -> None:
    await _scraped(prometheus)
    node, session = await _traffic(scheduler)
    try:
        queries = _panel_queries()
        named = {
            "dispatch p99": "histogram_quantile(0.99",
            "error rate": 'kind!="result"',
            "nodes by status": "switchboard_nodes_by_status",
            "GPU use": "switchboard_node_gpu_percent",
        }
        chosen = {
            what: next(e for exprs in queries.values() for e in exprs if marker in e)
            for what, marker in named.items()
        }
        # Until two scrapes after the traffic, rate() has nothing to work on.
        deadline = time.monotonic() + scaled(30.0)
        while not await asyncio.to_thread(_all_have_data, prometheus, list(chosen.values())):
            missing = {w: prometheus.query(e) for w, e in chosen.items()}
            assert time.monotonic() < deadline, f"the dashboard's panels never got data: {missing}"
            await asyncio.sleep(0.5)

        for title, exprs in queries.items():
            for expr in exprs:  # every panel's query is valid PromQL (an error fails get())
                await asyncio.to_thread(prometheus.query, expr)
            assert title

        [p99] = await asyncio.to_thread(prometheus.query, chosen["dispatch p99"])
        assert 0 < float(p99["value"][1]) < 1.0, p99
        [errors] = await asyncio.to_thread(prometheus.query, chosen["error rate"])
        assert 0 < float(errors["value"][1]) < 1, errors  # 1 error among 11 answers
        statuses = await asyncio.to_thread(prometheus.query, chosen["nodes by status"])
        by_status = {s["metric"]["status"]: float(s["value"][1]) for s in statuses}
        assert by_status["ready"] == 1, by_status
        [gpu] = await asyncio.to_thread(prometheus.query, chosen["GPU use"])
        assert gpu["metric"]["node_id"] == node.node_id and float(gpu["value"][1]) > 0, gpu

        rules = await asyncio.to_thread(prometheus.get, "/api/v1/rules")
        loaded = {r["name"]: r for g in rules["groups"] for r in g["rules"]}
        shipped = {
            r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
        }
        assert shipped and shipped <= set(loaded), sorted(shipped - set(loaded))
        assert all(loaded[name]["health"] == "ok" for name in shipped), loaded
    finally:
        await session.close()
        await node.close()
