"""The import rules that keep the layers one-way (design.md, seed §7, style §13).

Every module under ``src/switchboard`` is parsed with ``ast``; every import counts, wherever it
sits (module level, inside a function, under ``if TYPE_CHECKING``).  A rule names the modules
it governs and the modules they must not import; a failure lists each offending module, line
and import.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import switchboard

SRC = pathlib.Path(switchboard.__file__).parent
CORE = (
    "protocol",
    "management",
    "runtime",
    "sessions",
    "dispatch",
    "rooms",
    "store",
    "config",
    "metrics",
    "errors",
)
TOOLS = ("bench", "chaos", "demo", "legacy", "tools")
TOOLS_AND_EDGES = ("cli", "server", *TOOLS)


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, e.g. switchboard.dispatch.selection
    line: int
    target: str  # what it imports, e.g. switchboard.management.nodes

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(path: pathlib.Path) -> str:
    parts = ["switchboard", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module.split(".")
            package = package if is_package else package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(filter(None, [*package, base]))
        yield base
        # ``from switchboard import management`` imports a package by its attribute name.
        yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def _imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import in ``source``: ``ast.walk`` visits function bodies and ``if`` blocks too."""
    return [
        Import(module, getattr(node, "lineno", 0), target)
        for node in ast.walk(ast.parse(source))
        for target in _targets(node, module, is_package)
    ]


def _all_imports() -> list[Import]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        is_package = path.name == "__init__.py"
        found += _imports_of(path.read_text(), _module_name(path), is_package=is_package)
    return found


IMPORTS = _all_imports()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _ours(*names: str) -> tuple[str, ...]:
    return tuple(f"switchboard.{name}" for name in names)


@dataclass(frozen=True, slots=True)
class Rule:
    why: str
    governed: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()

    def violations(self, imports: list[Import]) -> list[Import]:
        return [
            imp
            for imp in imports
            if _within(imp.module, self.governed)
            and not _within(imp.module, self.exempt)
            and _within(imp.target, self.forbidden)
        ]


RULES = {
    "dispatch-sessions-not-management": Rule(
        "dispatch reads only the snapshot: it cannot reach the management lock (seed §7)",
        _ours("dispatch", "sessions"),
        _ours("management"),
    ),
    "management-not-sessions-dispatch": Rule(
        "the management domain cannot even name a session lock (seed §7)",
        _ours("management"),
        _ours("sessions", "dispatch"),
    ),
    "runtime-not-management": Rule(
        "the snapshot's values are runtime's own; management builds them, not the reverse",
        _ours("runtime"),
        _ours("management"),
    ),
    "protocol-is-sans-io": Rule(
        "the protocol is parsing and values: no loop, no sockets (style §1)",
        _ours("protocol"),
        ("asyncio", "aiohttp", "switchboard.server"),
    ),
    "rooms-are-pure": Rule(
        "rooms are bookkeeping: no loop, no sockets, no dispatch (style §1)",
        _ours("rooms"),
        ("asyncio", "aiohttp", *_ours("server", "dispatch", "sessions", "store")),
    ),
    "only-store-speaks-redis": Rule(
        "Redis errors are translated in one place (style §5); everyone else asks the store",
        ("switchboard",),
        ("redis", "hiredis"),
        exempt=_ours("store"),
    ),
    "core-not-tools-or-edges": Rule(
        "the core never reaches out to the CLI, the server or the tools beside it (style §13)",
        _ours(*CORE),
        _ours(*TOOLS_AND_EDGES),
    ),
    "product-not-tools": Rule(
        "the product never imports the tools; they plug in through the runner's hooks (style §13)",
        _ours("server", "agent", "client"),
        _ours(*TOOLS),
    ),
}


@pytest.mark.parametrize("name", list(RULES))
def test_import_rule(name: str) -> None:
    """Each layer imports only what its rule allows; the message lists every offender."""
    rule = RULES[name]
    bad = rule.violations(IMPORTS)
    assert not bad, f"{rule.why}:\n" + "\n".join(f"  {imp}" for imp in bad)


_HIDDEN = """
from typing import TYPE_CHECKING
from . import pools
from ..management import registry as reg
if TYPE_CHECKING:
    from switchboard.management.nodes import NodeState

def later() -> None:
    import switchboard.management.builder
"""


def test_the_scan_sees_hidden_and_relative_imports() -> None:
    """Imports inside functions, under TYPE_CHECKING and relative ones are all seen."""
    found = _imports_of(_HIDDEN, "switchboard.runtime.snapshot")
    targets = {imp.target for imp in found}
    assert {
        "switchboard.runtime.pools",
        "switchboard.management.registry",
        "switchboard.management.nodes",
        "switchboard.management.builder",
    } <= targets
    rule = RULES["runtime-not-management"]
    assert [f"{v.line}" for v in rule.violations(found)] == ["4", "4", "6", "6", "9"]
    assert "switchboard.runtime.snapshot:9 imports switchboard.management.builder" in {
        str(v) for v in rule.violations(found)
    }


def test_the_scan_covers_the_whole_package() -> None:
    """Every module is parsed: a known function-level import is among the imports found."""
    assert any(
        imp.module == "switchboard.store.factory" and imp.target == "switchboard.store.redis_store"
        for imp in IMPORTS
    )
