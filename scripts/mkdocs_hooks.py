"""mkdocs hook: links from docs/ to the rest of the repository point at the repository.

The Markdown in docs/ links to source files and examples relatively (``../examples/client.py``)
so that the links work where the files are read most, in the repository browser.  The site
holds only docs/, so there those links would be dead (and ``mkdocs build --strict`` refuses
them); this hook rewrites each one to the file on ``repo_url`` before the page is rendered.
"""

from __future__ import annotations

import re
from typing import Any

# ](../path) or ](../path#anchor), outside docs/; pages inside docs/ are left to mkdocs, which
# checks them.
_OUTSIDE = re.compile(r"\]\(\.\./(?P<path>[^)#\s]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    base = str(config["repo_url"]).rstrip("/") + "/blob/main/"
    return _OUTSIDE.sub(lambda m: f"]({base}{m['path']}{m['anchor'] or ''})", markdown)
