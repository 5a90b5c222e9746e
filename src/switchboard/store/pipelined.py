"""A small pipelined Redis client for the reservation store's hot path (reserve and release).

Why: redis-py spends ~270 µs of client CPU per call, mostly building the command and running
its pool, and that is what caps a scheduler's throughput; this client spends ~65-85 µs
(``benchmarks/micro/README.md``).  It does one thing: ``EVALSHA`` of known scripts over one
connection with many commands in flight.  RESP answers a connection's commands in order, so
replies are matched to a FIFO of futures; ``hiredis`` parses them.  Everything else (renew,
counts, ping) stays on redis-py, whose robustness matters more there than its cost.

Connection life cycle: none until the first call; then one at a time, shared by every caller.
Calls made while it connects queue on it (so concurrent first calls share one connect attempt,
and commands go out in call order) and are written once AUTH and SELECT have succeeded.  When
it is lost, every pending call fails at once with ``ConnectionFailed`` and the next call
connects again.  A caller that gives up (cancelled, timed out) leaves its place in the FIFO, so
its late reply is read and dropped and the next reply still reaches its own caller.  A
connection that owes replies but has read nothing for ``stall_s`` is treated as lost: a peer
that vanished without a reset (a network partition) would otherwise hold every call hostage
until TCP gives up, hours later.  More than ``max_in_flight`` commands owed a reply (abandoned
ones included) are refused at once rather than queued without bound.

Policy stays with the caller (``RedisStore``): timeouts per call, retries, and the mapping of
these errors onto the Switchboard exception tree::

    PipelinedError
    ├── ReplyError          Redis answered with an error reply (``ERR ...``, ``BUSY ...``)
    ├── ConnectionFailed    no usable connection: refused, lost, stalled, or set-up rejected
    │                       (also a builtin ``ConnectionError``)
    └── Overloaded          too many commands in flight; refused without being sent
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import hiredis
from redis.asyncio.connection import ConnectionPool, SSLConnection, UnixDomainSocketConnection

from switchboard.errors import ConfigError

log = logging.getLogger("switchboard.store")

Arg = str | int | bytes
# hiredis' stub declares a one-element tuple and no return type; it takes any number of
# str/int/bytes and returns the RESP bytes (C code, ~4x faster than encoding in Python).
_pack: Final = cast("Callable[[tuple[Arg, ...]], bytes]", hiredis.pack_command)
_NO_DATA: Final = object()  # what hiredis.Reader.gets() returns until a whole reply is in
DEFAULT_MAX_IN_FLIGHT: Final = 10_000
# A reply's value, or the error instead (``evalsha_then``).
Reply = Callable[[Any, BaseException | None], None]
# What a new connection runs first (after AUTH/SELECT), made at connect time: the command and
# the handler of its reply; None: nothing this time.
_PING: Final = b"*1\r\n$4\r\nPING\r\n"
_RECONNECT_S: Final = 0.05  # how soon a lost connection is opened again while it is needed
SetUpHook = Callable[[], "tuple[tuple[Arg, ...], Callable[[Any], None]] | None"]
DEFAULT_HOST: Final = "localhost"  # redis-py's defaults, for a URL that names no host or port
DEFAULT_PORT: Final = 6379


class PipelinedError(Exception):
    """Base of this module's errors."""


class ReplyError(PipelinedError):
    """An error reply; its text starts with Redis' error code (``NOSCRIPT``, ``BUSY``, ...)."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class ConnectionFailed(PipelinedError, ConnectionError):
    """No usable connection; the command may or may not have run."""


class Overloaded(PipelinedError):
    """More commands in flight than the client allows; this one was not sent."""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script known by its SHA1, as ``EVALSHA`` wants it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect: one TCP (maybe TLS) address or one unix socket path."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path: str | None = None  # a unix socket; host and port are then unused
    tls: ssl.SSLContext | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def of_pool(cls, pool: ConnectionPool) -> Endpoint:
        """The server a redis-py pool talks to, from the settings it parsed out of the URL
        (``parse_url``), so the two clients of a store can never point at different servers."""
        kwargs = pool.connection_kwargs
        if kwargs.get("credential_provider") is not None:
            raise ConfigError("the Redis store takes credentials from the URL only")
        if issubclass(pool.connection_class, UnixDomainSocketConnection):
            return cls(path=kwargs["path"], **_credentials(kwargs))
        tls = None
        if issubclass(pool.connection_class, SSLConnection):
            # redis-py's own context for these settings: create_default_context() plus any
            # ssl_* URL option (ssl_ca_certs, ssl_cert_reqs, ...), so both verify alike.
            conn = pool.connection_class(**kwargs)
            assert isinstance(conn, SSLConnection)
            tls = conn.ssl_context.get()
        host, port = kwargs.get("host", DEFAULT_HOST), int(kwargs.get("port", DEFAULT_PORT))
        return cls(host=host, port=port, tls=tls, **_credentials(kwargs))


def _credentials(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "db": int(kwargs.get("db") or 0),
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
    }


def _handshake(endpoint: Endpoint) -> list[tuple[Arg, ...]]:
    """The commands a new connection sends before any other (as redis-py does)."""
    commands: list[tuple[Arg, ...]] = []
    if endpoint.username is not None:
        commands.append(("AUTH", endpoint.username, endpoint.password or ""))
    elif endpoint.password is not None:
        commands.append(("AUTH", endpoint.password))
    if endpoint.db:
        commands.append(("SELECT", endpoint.db))
    return commands


class _Then:
    """A caller owed a reply that takes it as a callback (``evalsha_then``), called from
    ``data_received`` itself: a future's callbacks run one trip through the loop's ready
    queue later, behind every task the same read woke (E0 on Redis: ~80 µs at the median
    between the reply's bytes and the reservation's callback)."""

    __slots__ = ("reply",)

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class _Connection(asyncio.Protocol):
    """One socket: sends commands in call order, hands each reply to the oldest future still
    owed one.  Commands sent before the set-up (AUTH, SELECT) has succeeded are held back, so
    none can run as the wrong user or in the wrong database."""

    def __init__(self, *, max_in_flight: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(
            replyError=ReplyError, encoding="utf-8", notEnoughData=_NO_DATA
        )
        self._owed: deque[asyncio.Future[Any] | _Then] = deque()
        self._held: list[bytes] | None = []  # None once open: commands are then written at once
        self._max_in_flight = max_in_flight
        self._transport: asyncio.Transport | None = None
        self._failure: ConnectionFailed | None = None
        self._last_read = self._loop.time()  # of the last reply, or the first command owed one
        self.lost: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._failure is not None:  # closed or given up while connecting
            self._transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small commands must leave at once, not wait for Nagle to coalesce them.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        owed = self._owed
        direct: list[tuple[Reply, Any]] = []
        try:
            while (reply := self._reader.gets()) is not _NO_DATA:
                waiter = owed.popleft()  # IndexError: a reply nobody asked for
                if type(waiter) is _Then:
                    direct.append((waiter.reply, reply))
                    continue
                assert isinstance(waiter, asyncio.Future)
                if waiter.done():  # its caller gave up; the reply is dropped
                    continue
                if isinstance(reply, ReplyError):
                    waiter.set_exception(reply)
                else:
                    waiter.set_result(reply)
        except Exception as exc:  # the stream can no longer be matched to the FIFO
            self.abort(ConnectionFailed(f"redis reply stream broken ({type(exc).__name__})"))
            return
        self._last_read = self._loop.time()
        # Called once every reply of this read is matched: a callback may send (and so
        # append to the FIFO) or even abort the connection without upsetting the matching.
        for then, value in direct:
            try:
                if isinstance(value, ReplyError):
                    then(None, value)
                else:
                    then(value, None)
            except Exception:  # one caller's bug must not cost the others their replies
                log.exception("a redis reply's callback failed")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._failure is None:  # not ended by us: the peer or the network did it
            reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the server"
            log.warning("redis hot-path connection lost (%s)", reason)
            self._fail(ConnectionFailed(f"redis connection lost ({reason})"))
        if not self.lost.done():
            self.lost.set_result(None)

    # -- use
    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue one encoded command; the future gets its reply (or the connection's end)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._owe(future, command)
        return future

    def send_then(self, command: bytes, reply: Reply) -> None:
        """``send`` for a caller that takes its reply as a callback (see :class:`_Then`)."""
        self._owe(_Then(reply), command)

    def _owe(self, waiter: asyncio.Future[Any] | _Then, command: bytes) -> None:
        """Put ``waiter`` in the FIFO and write ``command`` (or hold it until set-up is done)."""
        if self._failure is not None:
            raise ConnectionFailed(str(self._failure))
        if len(self._owed) >= self._max_in_flight:
            raise Overloaded(f"{len(self._owed)} redis commands in flight")
        if not self._owed:
            self._last_read = self._loop.time()  # the stall clock starts with the first owed
        self._owed.append(waiter)
        if self._held is None:
            assert self._transport is not None
            self._transport.write(command)
        else:
            self._held.append(command)

    def set_up(self, commands: Sequence[bytes]) -> list[asyncio.Future[Any]]:
        """Write the set-up commands ahead of every held one; their replies come first."""
        assert self._transport is not None and self._held is not None
        futures = [self._loop.create_future() for _ in commands]
        self._owed.extendleft(reversed(futures))
        self._transport.write(b"".join(commands))
        return futures

    def open(self) -> None:
        """The set-up succeeded: write the held commands, and every later one at once."""
        assert self._transport is not None and self._held is not None
        held, self._held = self._held, None
        if self._failure is None:
            self._transport.write(b"".join(held))

    def stalled_for(self, stall_s: float) -> bool:
        """True if replies are owed and none has arrived for ``stall_s``."""
        return bool(self._owed) and self._loop.time() - self._last_read > stall_s

    @property
    def usable(self) -> bool:
        return self._failure is None

    def abort(self, failure: ConnectionFailed) -> None:
        """Fail every pending call with ``failure`` now and drop the socket."""
        self._fail(failure)
        if self._transport is not None:
            self._transport.abort()  # connection_lost follows and resolves ``lost``
        elif not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, failure: ConnectionFailed) -> None:
        if self._failure is not None:
            return
        self._failure = failure
        owed, self._owed = self._owed, deque()
        for waiter in owed:
            if type(waiter) is _Then:
                # From the loop, as a future's callbacks would be: a failure found inside a
                # caller's own call (a stalled connection given up) never calls back into it.
                self._loop.call_soon(waiter.reply, None, ConnectionFailed(str(failure)))
            elif isinstance(waiter, asyncio.Future) and not waiter.done():
                waiter.set_exception(ConnectionFailed(str(failure)))


class PipelinedClient:
    """``EVALSHA`` over one lazily opened, pipelined connection; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connect_timeout_s: float,
        stall_s: float,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self._endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._stall_s = stall_s
        self._max_in_flight = max_in_flight
        self._conn: _Connection | None = None
        self._opening: set[asyncio.Task[None]] = set()  # strong references to running connects
        self._closed = False
        # A command a new connection runs after its handshake and before any other, made
        # when the socket is up, and what to do with its reply (the store's lease re-assert).
        self.set_up_hook: SetUpHook | None = None

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run ``script``; after a ``SCRIPT FLUSH`` or a restart (``NOSCRIPT``) run it once
        more as ``EVAL`` of its source, which also puts it back in the server's cache.  (Such a
        retry runs after calls made later: call order holds while the script is cached.)"""
        try:
            return await self._connection().send(
                _pack(("EVALSHA", script.sha, len(keys), *keys, *args))
            )
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        return await self._connection().send(
            _pack(("EVAL", script.source, len(keys), *keys, *args))
        )

    def evalsha_then(
        self, script: Script, keys: Sequence[Arg], args: Sequence[Arg], reply: Reply
    ) -> None:
        """``evalsha`` without a coroutine: the command is written now (or queued while the
        connection opens), and ``reply(value, None)`` or ``reply(None, error)`` is called
        once, from the read that brings the reply (never from inside this call).  Costs no
        task and no trip through the ready queue: the reservation hot path's way in.
        ``NOSCRIPT`` is handled as in ``evalsha``."""

        def first(value: Any, error: BaseException | None) -> None:
            if isinstance(error, ReplyError) and error.code == "NOSCRIPT":
                self._send_then(_pack(("EVAL", script.source, len(keys), *keys, *args)), reply)
            else:
                reply(value, error)

        self._send_then(_pack(("EVALSHA", script.sha, len(keys), *keys, *args)), first)

    def command_then(self, command: Sequence[Arg], reply: Reply) -> None:
        """Send any one command now (or queued while the connection opens); ``reply`` as in
        ``evalsha_then``.  Commands sent one after another in the same call go out on the
        same connection in that order (Redis Cluster's ``ASKING`` before a redirected call)."""
        self._send_then(_pack(tuple(command)), reply)

    def _send_then(self, command: bytes, reply: Reply) -> None:
        """Send on the current connection; ``reply`` gets the reply from the read that brings
        it, or the failure from the loop (never from inside this call)."""
        try:
            self._connection().send_then(command, reply)
        except PipelinedError as exc:
            asyncio.get_running_loop().call_soon(reply, None, exc)

    def _send(self, command: bytes) -> asyncio.Future[Any]:
        """Send on the current connection; a future already failed if it cannot be sent."""
        try:
            return self._connection().send(command)
        except PipelinedError as exc:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def close(self) -> None:
        """Drop the connection; pending and later calls fail with ``ConnectionFailed`` (a caller
        retrying after a connection error must not open a connection nobody will close)."""
        self._closed = True
        for task in self._opening:
            task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort(ConnectionFailed("redis client closed"))
            await conn.lost

    def _connection(self) -> _Connection:
        """The connection to send on: the current one, or a new one whose connect has only
        begun.  Commands queue on it at once, so they go out in call order and concurrent
        first calls share one connect attempt."""
        conn = self._conn
        if conn is not None and conn.usable and not conn.stalled_for(self._stall_s):
            return conn
        if self._closed:
            raise ConnectionFailed("redis client closed")
        if conn is not None and conn.usable:
            log.warning("redis hot-path connection silent for %g s; reconnecting", self._stall_s)
            conn.abort(ConnectionFailed(f"redis sent nothing for {self._stall_s:g} s"))
        conn = self._conn = _Connection(max_in_flight=self._max_in_flight)
        conn.lost.add_done_callback(lambda _: self._lost(conn))
        task = asyncio.get_running_loop().create_task(self._open(conn))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)
        return conn

    def _lost(self, conn: _Connection) -> None:
        """A connection ended.  If the set-up hook has something to say (the store's running
        jobs' leases), connect again soon rather than at the next call: after a Redis restart
        the leases are back within a retry of Redis being up, before other instances fill
        the slots; while nothing needs it, a connection is opened only by the next call."""
        if self._closed or self._conn is not conn or self.set_up_hook is None:
            return
        asyncio.get_running_loop().call_later(_RECONNECT_S, self._reconnect, conn)

    def _reconnect(self, conn: _Connection) -> None:
        if self._closed or self._conn is not conn or self.set_up_hook is None:
            return
        if self.set_up_hook() is not None:
            self._connection()

    async def _open(self, conn: _Connection) -> None:
        """Connect ``conn`` and run the set-up within the connect timeout; any failure fails
        the connection and with it every call queued on it."""
        commands = [_pack(command) for command in _handshake(self._endpoint)]
        if self.set_up_hook is not None:
            commands.append(_PING)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._dial(conn)
                if not conn.usable:  # closed, or given up as stalled, while connecting
                    return
                replies = await asyncio.gather(*conn.set_up(commands), return_exceptions=True)
                if not _set_up_failed(conn, replies):
                    replies = await self._run_hook(conn)
        except asyncio.CancelledError:
            conn.abort(ConnectionFailed("redis client closed"))
            raise
        except (OSError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            conn.abort(ConnectionFailed(f"cannot connect to redis ({detail})"))
            return
        if not _set_up_failed(conn, replies):
            conn.open()

    async def _run_hook(self, conn: _Connection) -> list[Any]:
        """The set-up hook's command, once the connection has answered (so a connection
        that reaches nobody, as in a partition, never carries it: it could arrive late),
        made now with nothing between it and the write, so it reflects the state every
        command queued after it was made in.  Its reply goes to the hook's handler."""
        extra = self.set_up_hook() if self.set_up_hook is not None else None
        if extra is None or not conn.usable:
            return []
        command, then = extra
        replies = await asyncio.gather(*conn.set_up([_pack(command)]), return_exceptions=True)
        if not isinstance(replies[0], BaseException):
            then(replies[0])
        return replies

    async def _dial(self, conn: _Connection) -> None:
        loop, ep = asyncio.get_running_loop(), self._endpoint
        if ep.path is not None:
            await loop.create_unix_connection(lambda: conn, ep.path)
        else:
            await loop.create_connection(lambda: conn, ep.host, ep.port, ssl=ep.tls)


def _set_up_failed(conn: _Connection, replies: Sequence[Any]) -> bool:
    """Whether a set-up reply failed (the connection is then aborted, or had failed)."""
    for reply in replies:
        if isinstance(reply, ReplyError):  # the reply text never holds the password
            conn.abort(ConnectionFailed(f"redis refused the connection set-up: {reply}"))
        if isinstance(reply, BaseException):  # the connection has failed already
            return True
    return False
