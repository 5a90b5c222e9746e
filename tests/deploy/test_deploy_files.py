"""deploy/: what can be checked without a Docker engine or a cluster. Every YAML and JSON file
parses, every `switchboard` flag and SWITCHBOARD_* variable they use exists, the settings files
load, the probes point at the §7 endpoints, and the systemd unit passes `systemd-analyze`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from dataclasses import fields
from pathlib import Path

import click
import pytest
import yaml

from switchboard.cli import main
from switchboard.config import ENV_PREFIX, Settings, load_settings
from tests.deploy.files import (
    COMPOSE,
    CONFIG,
    DEPLOY,
    DOCKERFILE,
    KUBERNETES,
    METRIC,
    UNIT,
    dockerfile_stages,
    environment_names,
    exec_form,
    exported_names,
    invocations,
    kubernetes_objects,
    option_value,
    unit_values,
    yaml_documents,
)

TOKENS = {
    "SWITCHBOARD_NODE_TOKEN": "n-test",
    "SWITCHBOARD_SESSION_TOKEN": "s-test",
    "SWITCHBOARD_ADMIN_TOKEN": "a-test",
}
CONFIG_IN_IMAGE = "/etc/switchboard/switchboard.toml"


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_every_yaml_and_json_file_parses() -> None:
    """Each YAML (every document of it) and JSON file under deploy/ parses, and none is
    empty; a Kubernetes manifest names its apiVersion, kind and name."""
    yaml_files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    json_files = sorted(DEPLOY.rglob("*.json"))
    assert len(yaml_files) >= 9 and json_files, (yaml_files, json_files)
    for path in yaml_files:
        assert yaml_documents(path), path
    for path in json_files:
        assert json.loads(path.read_text()), path
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml_documents(path):
            assert doc["apiVersion"] and doc["kind"], path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


def test_every_switchboard_flag_exists_in_the_cli() -> None:
    """Each `switchboard` command line in the Dockerfile, compose file, unit and Deployment
    names a real subcommand whose options include every flag it passes, and click parses it."""
    found = invocations()
    assert {inv.where.split()[0] for inv in found} == {
        "Dockerfile",
        "compose",
        "systemd",
        "Deployment",
    }
    for inv in found:
        name, *rest = inv.args
        command = main.commands.get(name)
        assert command is not None, f"{inv.where}: no `switchboard {name}`"
        known = _options(command)
        for arg in rest:
            if arg.startswith("-"):
                flag = arg.partition("=")[0]
                assert flag in known, f"{inv.where}: `switchboard {name}` has no {flag}"
        # Parsing only (the callback does not run): values of the right shape, none missing.
        with command.make_context(name, list(rest)):
            pass


def test_every_config_path_is_where_the_file_is_mounted() -> None:
    """The --config each file passes is where that deployment puts deploy/switchboard.toml."""
    paths = {inv.where: option_value(inv.args, "--config") for inv in invocations()}
    assert set(paths.values()) == {CONFIG_IN_IMAGE}, paths
    copies = [rest.split() for rest in dockerfile_stages()[-1].all("COPY")]
    assert ["deploy/switchboard.toml", CONFIG_IN_IMAGE] in copies
    (compose,) = yaml_documents(COMPOSE)
    assert f"./switchboard.toml:{CONFIG_IN_IMAGE}:ro" in compose["services"]["scheduler"]["volumes"]
    pod = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    assert str(Path(mount["mountPath"]) / "switchboard.toml") == CONFIG_IN_IMAGE
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == kubernetes_objects()["ConfigMap"]["metadata"]["name"]


def test_every_switchboard_variable_is_a_setting() -> None:
    """SWITCHBOARD_* variables the deploy files set each name a setting (an unknown one would
    be ignored silently)."""
    keys = {ENV_PREFIX + f.name.upper() for f in fields(Settings)} | {ENV_PREFIX + "CONFIG"}
    used = {n: where for n, where in environment_names().items() if n.startswith(ENV_PREFIX)}
    assert set(TOKENS) <= set(used), used
    for name, where in used.items():
        assert name in keys, f"{where}: {name} is not a setting"


@pytest.mark.parametrize("source", ["deploy/switchboard.toml", "ConfigMap"])
def test_settings_files_load(source: str, tmp_path: Path) -> None:
    """deploy/switchboard.toml and the ConfigMap's copy load as `serve` loads them (tokens from
    the environment), listen on every address and use the Redis store; the copy has the same
    keys."""
    path = CONFIG
    if source == "ConfigMap":
        path = tmp_path / "switchboard.toml"
        path.write_text(kubernetes_objects()["ConfigMap"]["data"]["switchboard.toml"])
        assert set(tomllib.loads(path.read_text())) == set(tomllib.loads(CONFIG.read_text()))
    settings = load_settings({}, environ=TOKENS, config_path=str(path))
    assert settings.host == "0.0.0.0" and settings.port == 5010
    assert settings.store == "redis"
    assert not settings.insecure


def test_the_image_runs_as_a_user_and_checks_liveness() -> None:
    """Multi-stage, the final stage runs as a non-root numeric uid and its HEALTHCHECK asks
    /health/live (liveness, §7), on the port it exposes."""
    stages = dockerfile_stages()
    assert len(stages) >= 2 and stages[0].name == "build"
    final = stages[-1]
    user = final.last("USER")
    assert user is not None and user.split(":")[0] not in ("0", "root"), user
    assert user.split(":")[0].isdigit(), "a numeric uid, for runAsNonRoot"
    assert any(rest.startswith("--from=build ") for rest in final.all("COPY"))
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    command = exec_form(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert "/health/live" in command[-1]
    assert final.last("EXPOSE") == "5010"
    assert 'get("SWITCHBOARD_PORT", "5010")' in command[-1].replace("'", '"')


def test_probes_point_at_live_and_ready() -> None:
    """Kubernetes: liveness on /health/live, readiness on /health/ready, a PodDisruptionBudget
    selecting the Deployment's pods, a Service on the container's port, non-root."""
    objects = kubernetes_objects()
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} <= set(objects)
    pod = objects["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    labels = pod["metadata"]["labels"]
    for kind in ("PodDisruptionBudget",):
        selector = objects[kind]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), kind
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    (port,) = container["ports"]
    assert port["containerPort"] == 5010
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_prometheus_scrapes_the_scheduler_and_grafana_reads_prometheus() -> None:
    """compose: Prometheus scrapes scheduler:5010/metrics, Grafana's provisioned datasource is
    that Prometheus, and the dashboard's queries use its uid."""
    (compose,) = yaml_documents(COMPOSE)
    assert {"scheduler", "redis", "prometheus", "grafana"} <= set(compose["services"])
    (prometheus,) = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["switchboard"]["metrics_path"] == "/metrics"
    assert jobs["switchboard"]["static_configs"][0]["targets"] == ["scheduler:5010"]
    (datasources,) = yaml_documents(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana/dashboards/switchboard.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
    assert METRIC.search(json.dumps(dashboard))


def test_unit_is_hardened() -> None:
    """The systemd unit drops every privilege it can (the directives the issue names, and
    more) and restarts only on failure, never on a configuration error (status 2)."""
    values = unit_values()
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "DynamicUser": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "KillSignal": "SIGTERM",
    }.items():
        assert values.get(key) == [value], key


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
def test_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong, and `systemd-analyze security` rates the
    unit's exposure at most 2.0 ("OK"). The unit's ExecStart names /opt/switchboard, which
    does not exist here, so the copy checked runs this test's own `switchboard` instead."""
    here = Path(sys.executable).parent / "switchboard"
    assert here.exists(), here
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/switchboard/bin/switchboard", str(here)))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert match is not None, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0, security.stdout


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
def test_kustomization_renders_the_four_objects() -> None:
    """`kubectl kustomize` (offline: no cluster is needed to render) yields the four objects."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rendered.returncode == 0, rendered.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(rendered.stdout))
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]


def test_dockerfile_exists_where_the_readme_says() -> None:
    """deploy/README.md's build command names this Dockerfile and the repository root."""
    readme = (DEPLOY / "README.md").read_text()
    assert "docker build -f deploy/Dockerfile" in readme
    assert DOCKERFILE.exists()


ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "switchboard.json"


def test_alert_rules_are_prometheus_rule_groups_and_loaded() -> None:
    """alerts.yml is a rule file Prometheus loads (groups of rules, each with alert, expr,
    for, a severity and a summary); prometheus.yml names it where compose mounts it; the four
    alerts of issue 13 are there."""
    (rules,) = yaml_documents(ALERTS)
    assert set(rules) == {"groups"}
    alerts: dict[str, dict[str, object]] = {}
    for group in rules["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"], group
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
            assert rule["labels"]["severity"] in ("warning", "critical"), rule
            assert rule["annotations"]["summary"], rule
            alerts[rule["alert"]] = rule
    wanted = {
        "SwitchboardNoReadyNodeForPair": "switchboard_pair_ready_nodes",
        "SwitchboardDispatchP99High": "switchboard_dispatch_latency_seconds_bucket",
        "SwitchboardStoreDown": "switchboard_store_up",
        "SwitchboardErrorRateHigh": "switchboard_answers_total",
    }
    for alert, metric in wanted.items():
        assert metric in str(alerts[alert]["expr"]), alert
    assert "> 0.005" in str(alerts["SwitchboardDispatchP99High"]["expr"])  # the seed's 5 ms
    (prometheus,) = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")
    (compose,) = yaml_documents(COMPOSE)
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    assert prometheus["rule_files"] == [mounts["./prometheus/alerts.yml"]]


def test_every_metric_a_panel_or_an_alert_reads_is_exported(tmp_path: Path) -> None:
    """A real scheduler's /metrics page: every switchboard_* name in the dashboard and in the
    alert rules is a sample name one of its families produces (nodes by status, GPU use and
    the dispatch p99 included)."""
    from switchboard.tools.procs import SchedulerProcess

    server = SchedulerProcess(["--store", "memory"], log_path=tmp_path / "server.log")
    server.start(30)
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as page:
            text = page.read().decode()
    finally:
        server.terminate(30)
    exported = exported_names(text)
    used = set(METRIC.findall(DASHBOARD.read_text())) | set(METRIC.findall(ALERTS.read_text()))
    assert used and used <= exported, sorted(used - exported)
    for name in (
        "switchboard_nodes_by_status",
        "switchboard_node_gpu_percent",
        "switchboard_dispatch_latency_seconds_bucket",
    ):
        assert name in used, name
