"""The product core never imports the tools package (style guide point 13)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "switchboard"
CORE = ("protocol", "management", "runtime", "sessions", "dispatch", "store", "server")
CORE += ("agent", "client")


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from … import`` in ``path`` names (lazy ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("package", CORE)
def test_core_package_never_imports_the_tools(package: str) -> None:
    """No module of a core package imports ``switchboard.tools`` (at top level or lazily)."""
    offenders = sorted(
        f"{path.relative_to(SRC)}: {module}"
        for path in (SRC / package).rglob("*.py")
        for module in imported_modules(path)
        if module == "switchboard.tools" or module.startswith("switchboard.tools.")
    )
    assert offenders == []


def test_the_scan_sees_imports() -> None:
    """The scan is not vacuous: it finds the tools imports that bench does make."""
    assert "switchboard.tools.prom" in imported_modules(SRC / "bench" / "stats.py")
