"""Packaging: the bare install is the client SDK alone, and every server-side command names the
extra it needs when that extra is missing (pyproject.toml, issue 12)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from switchboard import DISTRIBUTION, __version__
from switchboard.cli import COMMAND_EXTRAS, EXTRA_MODULES, main

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Everything the client must not drag in: the server's, the agent's and the tools' libraries.
HEAVY = (
    "redis",
    "hiredis",
    "prometheus_client",
    "rich",
    "psutil",
    "uvloop",
    "matplotlib",
    "immutables",
)

# Runs argv[2:] as `switchboard` with the modules named in argv[1] made unimportable, as if
# their distributions were not installed (an import of a name mapped to None raises ImportError,
# and importlib.util.find_spec answers None for it).
AS_IF_MISSING = (
    "import sys\n"
    "for name in filter(None, sys.argv[1].split(',')):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['switchboard', *sys.argv[2:]]\n"
    "from switchboard.cli import main\n"
    "main()\n"
)


def _python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _switchboard_without(missing: tuple[str, ...], *argv: str) -> subprocess.CompletedProcess[str]:
    return _python("-c", AS_IF_MISSING, ",".join(missing), *argv)


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("-", "_")


def _extra_names(extra: str) -> set[str]:
    """Requirement names an extra brings, its references to our own other extras followed."""
    names: set[str] = set()
    own = DISTRIBUTION.replace("-", "_")
    for requirement in PYPROJECT["project"]["optional-dependencies"][extra]:
        name = _requirement_name(requirement)
        if name == own:
            inner = re.search(r"\[([^\]]+)\]", requirement)
            assert inner is not None, requirement
            for other in inner.group(1).split(","):
                names |= _extra_names(other.strip())
        else:
            names.add(name)
    return names


def test_importing_the_client_loads_nothing_heavy() -> None:
    """`import switchboard.client` in a fresh interpreter loads aiohttp and msgspec and none of
    the server's, agent's or tools' libraries."""
    probe = "import json, sys\nimport switchboard.client\nprint(json.dumps(sorted(sys.modules)))"
    done = _python("-c", probe)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert {"aiohttp", "msgspec"} <= loaded  # the probe sees real imports
    heavy = sorted(m for m in loaded if m.split(".")[0] in (*HEAVY, "click"))
    assert heavy == [], f"switchboard.client imported {heavy}"


def test_client_and_translate_work_without_any_extra() -> None:
    """With every extra's library unimportable, `switchboard translate` still runs: it reaches
    the network (nothing listens on port 1) and reports that, exit status 1, no traceback."""
    done = _switchboard_without(
        HEAVY, "translate", "--generate-seconds", "0.1", "--url", "ws://127.0.0.1:1"
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "127.0.0.1:1" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("argv", "extra", "blocked"),
    [
        (("serve", "--port", "0"), "server", ("redis",)),
        (("serve",), "server", ("prometheus_client", "hiredis")),
        (("node", "--url", "ws://127.0.0.1:1"), "agent", ("psutil",)),
        (("demo", "--duration", "1"), "demo", ("rich",)),
        (("bench", "--quick"), "bench", ("redis",)),
        (("replay", str(ROOT / "README.md")), "bench", ("psutil",)),
        (("chaos", "--quick"), "bench", ("rich",)),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_command_without_its_extra_says_which_to_install(
    argv: tuple[str, ...], extra: str, blocked: tuple[str, ...]
) -> None:
    """A server-side command on an install without its extra exits 2 with the pip command to
    run and the missing modules, before it imports any of them (no traceback)."""
    done = _switchboard_without(blocked, *argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"pip install '{DISTRIBUTION}[{extra}]'" in done.stderr, done.stderr
    assert f"needs the [{extra}] extra" in done.stderr
    for name in blocked:
        assert name in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "listening" not in done.stdout


def test_help_works_without_the_extra() -> None:
    """--help of a server-side command needs no extra: the check runs only when the command
    does."""
    done = _switchboard_without(HEAVY, "serve", "--help")
    assert done.returncode == 0, done.stderr
    assert "--redis-url" in done.stdout


@pytest.mark.parametrize("argv", [("pools", "get"), ("status",), ("drain", "n1")])
def test_operator_commands_work_without_any_extra(argv: tuple[str, ...]) -> None:
    """`switchboard pools get`, `status`, `nodes`, `drain`, `undrain` are HTTP clients like
    translate: with every extra's library unimportable they reach the network and report it,
    exit status 1, no traceback."""
    done = _switchboard_without(HEAVY, *argv, "--url", "http://127.0.0.1:1")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "127.0.0.1:1" in done.stderr


def test_every_server_side_command_is_checked() -> None:
    """Every command but translate, pools and the operator commands (HTTP clients) needs an
    extra; the table names each, and only real ones."""
    assert set(main.commands) - set(COMMAND_EXTRAS) == {
        "translate",
        "pools",
        "status",
        "nodes",
        "drain",
        "undrain",
    }
    assert set(COMMAND_EXTRAS.values()) <= set(EXTRA_MODULES)


def test_extra_modules_match_pyproject() -> None:
    """The modules the CLI checks for are the ones each extra of pyproject.toml installs, and
    the bare install is the client's own: aiohttp, msgspec and click for the command."""
    base = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert base == {"aiohttp", "msgspec", "click"}
    for extra, modules in EXTRA_MODULES.items():
        names = _extra_names(extra)
        assert set(modules) <= names, (extra, sorted(names))
        assert not names & base, extra
    everything = _extra_names("dev")
    for extra in ("server", "agent", "demo", "bench"):
        assert _extra_names(extra) <= everything, f"[dev] lacks part of [{extra}]"


def test_name_and_version_live_in_one_place() -> None:
    """pyproject.toml takes the version from switchboard.__version__; the installed metadata
    agrees, under the name the CLI tells people to install."""
    project = PYPROJECT["project"]
    assert project["name"] == DISTRIBUTION
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "switchboard.__version__"}
    assert importlib.metadata.version(DISTRIBUTION) == __version__


def test_lock_pins_every_installed_distribution() -> None:
    """requirements.lock is exactly what the dev venv holds (scripts/setup.sh installs it)."""
    locked = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, version = line.partition("==")
        locked[name.lower().replace("-", "_")] = version
    installed = {
        dist.metadata["Name"].lower().replace("-", "_"): dist.version
        for dist in importlib.metadata.distributions()
    }
    installed.pop(DISTRIBUTION.replace("-", "_"), None)
    for tool in ("pip", "setuptools", "wheel"):  # the venv's own, not the project's
        installed.pop(tool, None)
    assert installed == locked
