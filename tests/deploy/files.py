"""Reading the files under deploy/ the way their tools do, for the deploy tests."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
UNIT = DEPLOY / "systemd" / "switchboard.service"
KUBERNETES = DEPLOY / "kubernetes"
CONFIG = DEPLOY / "switchboard.toml"


@dataclass
class Stage:
    """One FROM … stage of a Dockerfile: its instructions, continuation lines joined."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((word, rest.strip()))
    return stages


def exec_form(rest: str) -> list[str]:
    """A JSON-array instruction argument (``CMD ["serve", …]``)."""
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def yaml_documents(path: Path) -> list[Any]:
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    """Every manifest object by kind (one of each here)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml_documents(path):
            objects[doc["kind"]] = doc
    return objects


def unit_values(path: Path = UNIT) -> dict[str, list[str]]:
    """``Key=value`` lines of a systemd unit; a key given twice keeps both values."""
    values: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


@dataclass(frozen=True)
class Invocation:
    """``switchboard <args>`` as one deploy file runs it."""

    where: str
    args: tuple[str, ...]


def invocations() -> list[Invocation]:
    """Every `switchboard` command line the deploy files run."""
    found: list[Invocation] = []
    final = dockerfile_stages()[-1]
    entrypoint = exec_form(final.last("ENTRYPOINT") or "[]")
    assert entrypoint == ["switchboard"], entrypoint
    found.append(Invocation("Dockerfile CMD", tuple(exec_form(final.last("CMD") or "[]"))))
    (compose,) = yaml_documents(COMPOSE)
    # The compose service runs the image, whose ENTRYPOINT is `switchboard`.
    found.append(
        Invocation("compose scheduler", tuple(compose["services"]["scheduler"]["command"]))
    )
    (exec_start,) = unit_values()["ExecStart"]
    words = shlex.split(exec_start)
    assert Path(words[0]).name == "switchboard", exec_start
    found.append(Invocation("systemd ExecStart", tuple(words[1:])))
    deployment = kubernetes_objects()["Deployment"]
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        found.append(Invocation(f"Deployment {container['name']}", tuple(container["args"])))
    return found


def environment_names() -> dict[str, str]:
    """Every environment variable the deploy files set, with where it is set."""
    names: dict[str, str] = {}
    (compose,) = yaml_documents(COMPOSE)
    for service, spec in compose["services"].items():
        for name in spec.get("environment", {}):
            names[name] = f"compose {service}"
    for container in kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]["containers"]:
        for entry in container.get("env", []):
            names[entry["name"]] = f"Deployment {container['name']}"
    for line in (DEPLOY / "example.env").read_text().splitlines():
        if line and not line.startswith("#"):
            names[line.partition("=")[0]] = "example.env"
    for value in unit_values().get("Environment", []):
        for word in shlex.split(value):
            names[word.partition("=")[0]] = "systemd Environment"
    for word, rest in dockerfile_stages()[-1].instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                names[item.partition("=")[0]] = "Dockerfile ENV"
    return names


def option_value(args: tuple[str, ...], flag: str) -> str | None:
    for at, arg in enumerate(args):
        if arg == flag:
            return args[at + 1]
        if arg.startswith(flag + "="):
            return arg.partition("=")[2]
    return None


METRIC = re.compile(r"\bswitchboard_[a-z_]+")

# What each exposition type adds to a family's name in the samples a query can select (this
# text format names a counter's family with its ``_total`` already).
_SUFFIXES = {
    "counter": ("", "_total"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names(metrics_text: str) -> set[str]:
    """Every sample name the families on a /metrics page can produce, samples or not yet
    (a summary by node has no sample until a node has run a job)."""
    families = re.findall(r"^# TYPE (\S+) (\S+)$", metrics_text, re.MULTILINE)
    return {name + suffix for name, kind in families for suffix in _SUFFIXES[kind]}
