"""The documentation site (mkdocs.yml over docs/): its nav lists every page, every relative
link resolves, and, where mkdocs is installed, ``mkdocs build --strict`` passes."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# [text](target) with a relative target (not a URL, not a bare #anchor), outside code spans
# being rare enough in these pages that a plain search is exact.
LINK = re.compile(r"\]\((?P<target>(?![a-z]+://|#|mailto:)[^)\s#]+)(?:#[^)\s]*)?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return loaded


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def test_the_nav_lists_every_page_once() -> None:
    pages = _nav_pages(_config()["nav"])
    assert sorted(pages) == sorted(p.name for p in DOCS.glob("*.md"))
    assert len(pages) == len(set(pages))


def test_the_three_how_tos_are_in_the_nav() -> None:
    pages = set(_nav_pages(_config()["nav"]))
    assert {"howto-nginx.md", "howto-real-model.md", "howto-upgrade.md"} <= pages


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_every_relative_link_resolves(page: str) -> None:
    """Links between pages, to images, and out of docs/ to the repository's files (which the
    site's hook turns into repository links) all name files that exist."""
    text = FENCE.sub("", (DOCS / page).read_text())
    for match in LINK.finditer(text):
        target = (DOCS / match["target"]).resolve()
        assert target.exists(), f"{page}: {match['target']} does not exist"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts/mkdocs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hook_points_links_out_of_docs_at_the_repository() -> None:
    hook = _hooks().on_page_markdown
    config = {"repo_url": "https://example.org/repo/"}
    text = "[a](../examples/client.py) [b](protocol.md) [c](../src/x.py#L3) [d](https://x/y)"
    assert hook(text, page=None, config=config, files=None) == (
        "[a](https://example.org/repo/blob/main/examples/client.py) [b](protocol.md)"
        " [c](https://example.org/repo/blob/main/src/x.py#L3) [d](https://x/y)"
    )


MKDOCS_MISSING = (
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None
)


@pytest.mark.skipif(
    MKDOCS_MISSING,
    reason="mkdocs and mkdocs-material are not in the dev install (they have their own pins in"
    " docs/requirements.txt, to keep CI's install small); the nav and link checks above run"
    " instead. Install them to build the site here.",
)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: no broken link, no page missing from the nav, no bad config."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for page in ("howto-nginx", "howto-real-model", "howto-upgrade", "protocol"):
        assert (tmp_path / page / "index.html").is_file()
