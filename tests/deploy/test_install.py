"""Real installs in fresh venvs: the Dockerfile's build step run as written (outside a
container), and the bare `pip install` that is the client SDK alone. Each takes 10-20 s with
pip's cache warm; pip needs the package index (or its cache) for the dependencies."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from switchboard import DISTRIBUTION
from switchboard.tools.procs import LISTENING
from tests.deploy.files import (
    CONFIG,
    DEPLOY,
    METRIC,
    ROOT,
    dockerfile_stages,
    exec_form,
    exported_names,
)

if TYPE_CHECKING:
    from tests.conftest import RedisServer

VENV_IN_IMAGE = "/opt/switchboard"
NOT_IN_THE_SERVER_IMAGE = ("rich", "psutil", "pytest", "matplotlib", "mypy")
HEAVY = ("redis", "hiredis", "prometheus_client", "rich", "psutil", "uvloop", "immutables")
TOKENS = {
    "SWITCHBOARD_NODE_TOKEN": "n-test",
    "SWITCHBOARD_SESSION_TOKEN": "s-test",
    "SWITCHBOARD_ADMIN_TOKEN": "a-test",
}


def _run(args: list[str], *, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build_context(tmp_path: Path) -> Path:
    """What the build stage's COPY lines bring from the repository root, at the same places
    (the stage's WORKDIR is the context directory here)."""
    context = tmp_path / "context"
    context.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for rest in dockerfile_stages()[0].all("COPY"):
        *sources, target = rest.split()
        for source in sources:
            # `COPY a b ./` puts each into the directory; `COPY src ./src` names the copy.
            at = context / target / Path(source).name if target.endswith("/") else context / target
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, at, ignore=skip)
            else:
                at.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, at)
    return context


def _installed(venv: Path) -> set[str]:
    listing = _run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"])
    return {entry["name"].lower().replace("-", "_") for entry in json.loads(listing)}


def _pip_step() -> str:
    """The build stage's RUN line that makes the venv, as the image runs it."""
    (step,) = [rest for rest in dockerfile_stages()[0].all("RUN") if "pip install" in rest]
    return step


@pytest.mark.redis
def test_dockerfile_install_step_gives_a_working_scheduler(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The Dockerfile's venv step, run for real in a temp dir (its /opt/switchboard moved
    there, and without --no-cache-dir so pip's cache serves the wheels): the venv has the
    [server] extra and nothing of the tools; its `switchboard` runs the image's CMD against a
    real Redis; the image's HEALTHCHECK command passes against it, and fails with nothing
    listening; /health/ready is 200 and every metric the Grafana dashboard plots is served."""
    context = _build_context(tmp_path)
    venv = tmp_path / "venv"
    step = _pip_step().replace(VENV_IN_IMAGE, str(venv)).replace(" --no-cache-dir", "")
    _run(["bash", "-euc", step], cwd=context, timeout=600)

    installed = _installed(venv)
    assert {DISTRIBUTION.replace("-", "_"), "redis", "hiredis", "prometheus_client"} <= installed
    assert "uvloop" in installed
    assert not installed & set(NOT_IN_THE_SERVER_IMAGE), installed

    final = dockerfile_stages()[-1]
    cmd = exec_form(final.last("CMD") or "[]")
    config_at = cmd.index("--config") + 1
    cmd[config_at] = str(CONFIG)  # the file the image copies to that path
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")},
        **TOKENS,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        "SWITCHBOARD_REDIS_URL": redis_server.url,
        "SWITCHBOARD_REDIS_NAMESPACE": f"deploy-{os.getpid()}",
        # Loopback and any free port here; the image itself listens on 0.0.0.0:5010.
        "SWITCHBOARD_HOST": "127.0.0.1",
        "SWITCHBOARD_PORT": "0",
    }
    server = subprocess.Popen(
        [str(venv / "bin" / "switchboard"), *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = LISTENING.search(line)
        assert match is not None, line + (server.stderr.read() if server.poll() is not None else "")
        port = match["port"]
        assert "store=redis" in line

        healthcheck = final.last("HEALTHCHECK") or ""
        probe = exec_form(healthcheck[healthcheck.index("CMD") + 3 :].strip())
        check = subprocess.run(
            probe, env={**env, "SWITCHBOARD_PORT": port}, capture_output=True, timeout=30
        )
        assert check.returncode == 0, check.stderr
        nobody = subprocess.run(
            probe, env={**env, "SWITCHBOARD_PORT": "1"}, capture_output=True, timeout=30
        )
        assert nobody.returncode != 0

        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/health/ready", timeout=10) as ready:
            assert ready.status == 200 and json.load(ready) == {"status": "ready"}
        with urllib.request.urlopen(base + "/metrics", timeout=10) as metrics:
            served = exported_names(metrics.read().decode())
        dashboard = (DEPLOY / "grafana" / "dashboards" / "switchboard.json").read_text()
        plotted = set(METRIC.findall(dashboard))
        assert plotted and plotted <= served, plotted - served
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            status = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert status == 0


def test_bare_install_is_the_client_alone(tmp_path: Path) -> None:
    """`pip install <dist>` without extras (here from the source tree, with the lock): aiohttp,
    msgspec and click come, none of the extras' libraries do; the SDK imports; `switchboard
    serve` says which extra to install and exits 2."""
    context = _build_context(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", "-c", "requirements.lock", "."], cwd=context)

    installed = _installed(venv)
    assert {"aiohttp", "msgspec", "click"} <= installed
    assert not installed & {*HEAVY, "matplotlib"}, installed
    _run([python, "-c", "from switchboard.client import Session, sine_pcm16; sine_pcm16(0.1)"])

    refused = subprocess.run(
        [str(venv / "bin" / "switchboard"), "serve"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2, refused.stderr
    assert f"pip install '{DISTRIBUTION}[server]'" in refused.stderr
    assert re.search(r"missing: redis, hiredis, prometheus_client, immutables", refused.stderr)
