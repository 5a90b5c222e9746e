"""``switchboard pools get|put FILE``: a scheduler's configured pools over the operator API.

``get`` prints ``GET /api/v1/pools`` (protocol.md §4) as JSON or as a table; ``put`` sends a
file to ``PUT /api/v1/pools``.  The file is JSON, either the body itself (``{"pools": [...]}``)
or a bare list of pools (so the output of ``get`` can be edited and sent back: ``members`` is
ignored), or TOML (a name ending in ``.toml``) with ``[[pools]]`` tables, so the config file
of ``switchboard serve`` can be sent as it is (its other keys are not sent).  The server
checks the pools, with the one parser every way in uses; this side only reads the file.

Exit status: 0 done; 1 the server refused (its error is printed) or could not be reached;
2 the file cannot be read.  Only aiohttp, as the rest of the client: no extra needed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

DEFAULT_URL = "http://127.0.0.1:5010"
PATH = "/api/v1/pools"
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}

Echo = Callable[[str], None]


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


class PoolsFileError(Exception):
    """A pools file that cannot be read or is neither JSON nor TOML pools."""


class RequestFailed(Exception):
    """The server could not be reached (``status`` None), or answered with an error (its HTTP
    status); the text says which."""

    def __init__(self, message: str, *, status: int | None = None, reply: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.reply = reply


def api_url(url: str, path: str = PATH) -> str:
    """``http://host:port`` (or ``ws://``, or ``host:port``) → ``http://host:port/api/v1/pools``
    (or ``path``); a path in ``url`` is kept as a prefix (a scheduler behind a proxy)."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"not a scheduler URL: {url!r} (expected http://HOST:PORT)")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def read_pools_file(path: str) -> bytes:
    """The ``PUT`` body for the file at ``path`` (see the module docstring)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PoolsFileError(f"cannot read {path}: {exc.strerror}") from None
    if path.endswith(".toml"):
        try:
            table = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PoolsFileError(f"{path} is not valid TOML: {exc}") from None
        if "pools" not in table:
            raise PoolsFileError(f"{path} has no [[pools]] tables (`pools = []` clears them)")
        # default=str: a TOML date is no pool field; the server names the field it breaks.
        return json.dumps({"pools": table["pools"]}, default=str).encode()
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PoolsFileError(f"{path} is not valid JSON ({exc}); TOML files end in .toml") from None
    if isinstance(body, list):  # the output of `pools get`
        return json.dumps({"pools": body}).encode()
    return data  # the body itself, sent byte for byte: the server's messages refer to it


async def request_json(
    method: str, url: str, *, token: str | None, body: bytes | None = None, limit: float
) -> Any:
    """One operator API request (the bearer token when given); the decoded 200 reply, else
    :class:`RequestFailed`.  Every operator command goes through here."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as client,
            client.request(method, url, data=body, headers=headers) as resp,
        ):
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RequestFailed(f"cannot reach {url}: {str(exc) or type(exc).__name__}") from None
    try:
        reply = json.loads(text)
    except ValueError:
        reply = text
    if status != 200:
        message = f"{method} {url}: HTTP {status}: {_server_error(reply)}"
        raise RequestFailed(message, status=status, reply=reply)
    return reply


def _server_error(reply: Any) -> str:
    if isinstance(reply, dict) and "message" in reply:
        return f"{reply.get('error', 'error')}: {reply['message']}"
    return str(reply)[:500]


def format_table(pools: list[dict[str, Any]]) -> str:
    """One line a pool: id, name, languages, required services, members."""
    header = ("POOL_ID", "NAME", "LANGUAGES", "REQUIRED_SERVICES", "MEMBERS")
    return aligned(
        header,
        [
            (
                str(p.get("pool_id", "")),
                str(p.get("name", "")),
                ",".join(p.get("languages", [])),
                ",".join(p.get("required_services", [])) or "-",
                ",".join(p.get("members", [])) or "-",
            )
            for p in pools
        ],
    )


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain text columns, two spaces apart (the client has no table library: the bare
    install stays aiohttp, msgspec and click)."""
    table = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _show(pools: Any, fmt: str) -> str:
    if fmt == "table" and isinstance(pools, list):
        return format_table(pools)
    return json.dumps(pools, indent=2)


def run_pools_get(
    *,
    url: str,
    token: str | None,
    fmt: str = "json",
    timeout: float = 10.0,
    echo: Echo = print,
    echo_err: Echo = to_stderr,
) -> int:
    """Print the scheduler's pools; the exit status."""
    return _exchange("GET", None, url, token, fmt, timeout, echo, echo_err)


def run_pools_put(
    path: str,
    *,
    url: str,
    token: str | None,
    fmt: str = "json",
    timeout: float = 10.0,
    echo: Echo = print,
    echo_err: Echo = to_stderr,
) -> int:
    """Replace the scheduler's configured pools with the file's; print the new pools."""
    try:
        body = read_pools_file(path)
    except PoolsFileError as exc:
        echo_err(f"switchboard: error: {exc}")
        return 2
    return _exchange("PUT", body, url, token, fmt, timeout, echo, echo_err)


def _exchange(
    method: str,
    body: bytes | None,
    url: str,
    token: str | None,
    fmt: str,
    timeout: float,
    echo: Echo,
    echo_err: Echo,
) -> int:
    """One request to the pools endpoint; print the pools it answers; the exit status."""
    try:
        pools = asyncio.run(
            request_json(method, api_url(url), token=token, body=body, limit=timeout)
        )
    except (RequestFailed, ValueError) as exc:
        echo_err(f"switchboard: error: {exc}")
        return 1
    echo(_show(pools, fmt))
    return 0
