"""What probing costs each Redis: a target's kept connections, and a cap per Redis host.

A `RedisLink` is one target's way to its Redis: at most `size` connections (one for the
exporter), opened when a probe needs one, kept for the next probe, closed after
`idle_close_seconds` unused. Every link to the same host (as written in `redis.host`) shares a
`RedisHost`, which holds at most `max_connections` open at once: when it is full, a new
connection first closes the one idle the longest on that host, and if none is idle it waits for
one to close, within the probe's deadline. A host also opens at most `CONNECTS_AT_ONCE`
connections at a time, so a cold start against thousands of targets reaches each Redis as a
queue of connects, not a herd.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis_autoheal.errors import RedisError
from redis_autoheal.resp import CLIENT_NAME, RedisConnection, tls_context

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis_autoheal.config import RedisEndpoint
    from redis_autoheal.resp import Command, Reply

CONNECTS_AT_ONCE = 16  # connections being opened at once to one host


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many Redis connections a process holds to one host, and how long an idle one lives."""

    max_connections_per_host: int = 1000
    idle_close_seconds: float = 300.0


class RedisHost:
    """The connections open to one Redis host, under its cap; the idle ones, oldest first."""

    __slots__ = ("_connecting", "_idle", "_sweep", "_waiters", "limits", "name", "open")

    def __init__(self, name: str, limits: ConnectionLimits) -> None:
        self.name = name
        self.limits = limits
        self.open = 0  # connections open or being opened
        self._idle: OrderedDict[RedisConnection, float] = OrderedDict()  # -> idle since
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._connecting: asyncio.Semaphore | None = None
        self._sweep: asyncio.TimerHandle | None = None

    async def take_slot(self) -> None:
        """Room for one more connection: at once, by closing the longest idle, or by waiting."""
        while self.open >= self.limits.max_connections_per_host:
            if self._idle:
                oldest = next(iter(self._idle))
                oldest.close()  # its link learns it closed; the slot is free now
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.give_slot()  # handed over as we were cancelled: pass it on
                raise
            return  # the slot was handed over: `open` already counts it
        self.open += 1

    def give_slot(self) -> None:
        """A connection closed (or was never opened): hand its slot to a waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.open -= 1

    @contextlib.asynccontextmanager
    async def connecting(self) -> AsyncIterator[None]:
        """While opening one: at most CONNECTS_AT_ONCE to this host."""
        if self._connecting is None:
            self._connecting = asyncio.Semaphore(CONNECTS_AT_ONCE)
        async with self._connecting:
            yield

    def park(self, conn: RedisConnection) -> None:
        """`conn` is idle from now; it is closed if still idle after idle_close_seconds, or at
        once if another target waits for room on this host."""
        if any(not w.done() for w in self._waiters):
            conn.close()  # its slot goes to the waiter
            return
        loop = asyncio.get_running_loop()
        self._idle[conn] = loop.time()
        if self._sweep is None:
            self._sweep = loop.call_later(self.limits.idle_close_seconds, self._close_idle)

    def unpark(self, conn: RedisConnection) -> None:
        self._idle.pop(conn, None)

    def _close_idle(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        expired = loop.time() - self.limits.idle_close_seconds
        while self._idle:
            conn, since = next(iter(self._idle.items()))
            if since > expired:
                self._sweep = loop.call_at(since + self.limits.idle_close_seconds, self._close_idle)
                return
            conn.close()  # connection_closed() takes it off the idle list

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None


class RedisHosts:
    """The RedisHost of each host name, made on first use."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        self._hosts: dict[str, RedisHost] = {}

    def limit(self, limits: ConnectionLimits) -> None:
        """New limits, for every host (a config reload): a lower cap closes idle connections as
        new ones need room, and no connection is cut while in use."""
        self.limits = limits
        for host in self._hosts.values():
            host.limits = limits

    def host(self, name: str) -> RedisHost:
        found = self._hosts.get(name)
        if found is None:
            found = self._hosts[name] = RedisHost(name, self.limits)
        return found


class RedisLink:
    """One target's Redis connections: up to `size`, opened on demand, reused, closed idle.

    With one connection (the exporter's), requests that overlap share it, pipelined: a
    probe's PING and its INFO go out together and Redis answers them in order. With more
    (the remediator's), each request has a connection to itself, so a slow one delays no
    other.
    """

    __slots__ = ("_count", "_idle", "_shared", "_waiters", "endpoint", "host", "size")

    def __init__(self, endpoint: RedisEndpoint, host: RedisHost, size: int = 1) -> None:
        self.endpoint = endpoint
        self.host = host
        self.size = size
        self._count = 0  # connections open or being opened
        self._idle: list[RedisConnection] = []
        self._shared: RedisConnection | None = None  # in use, and pipelined (size 1)
        self._waiters: deque[asyncio.Future[RedisConnection | None]] | None = None

    async def request(self, commands: Sequence[Command]) -> tuple[list[Reply], float]:
        """Replies to `commands`, sent together on one of the target's connections, and the
        seconds spent getting that connection (opening one if none was kept)."""
        started = time.perf_counter()
        conn = await self._acquire()
        waited = time.perf_counter() - started
        try:
            replies = await conn.request(commands)
        finally:
            self._release(conn)
        return replies, waited

    async def _acquire(self) -> RedisConnection:
        """A connection with this request counted among its users."""
        conn = self._take()
        if conn is not None:
            return conn
        if self._count >= self.size:
            handed = await self._wait()
            if handed is not None:
                return handed
        else:
            self._count += 1
        try:
            conn = await self._open()
        except BaseException:
            self._count -= 1
            self._wake(None)
            raise
        conn.users += 1
        if self.size == 1:
            self._shared = conn
            while self._wake(conn):  # those who waited for it share it
                pass
        return conn

    def _take(self) -> RedisConnection | None:
        """A connection to use at once: the shared one in use, or an idle one."""
        conn = self._shared
        if conn is None or conn.closed:
            conn = None
            while self._idle:
                idle = self._idle.pop()
                self.host.unpark(idle)
                if not idle.closed:
                    conn = idle
                    break
        if conn is not None:
            conn.users += 1
            if self.size == 1:
                self._shared = conn
        return conn

    async def _wait(self) -> RedisConnection | None:
        """A connection handed over by a probe that finished, or None: open one."""
        if self._waiters is None:
            self._waiters = deque()
        waiter: asyncio.Future[RedisConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()
                if handed is None:
                    self._count -= 1
                    self._wake(None)
                else:
                    self._release(handed)
            raise

    def _wake(self, conn: RedisConnection | None) -> bool:
        """Hand `conn` (or the right to open one) to the first waiter; False if none waits."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiters:
                self._waiters = None  # a deque is 600 bytes: none kept per target when idle
            if not waiter.done():
                if conn is None:
                    self._count += 1  # the waiter opens one
                else:
                    conn.users += 1
                waiter.set_result(conn)
                return True
        return False

    def _release(self, conn: RedisConnection) -> None:
        conn.users -= 1
        if conn.closed or conn.users:
            return  # connection_closed() counted it out, or another request still uses it
        if self.size == 0:  # the link was closed while this request ran
            conn.close()
            return
        if self._wake(conn):
            return
        if self._shared is conn:
            self._shared = None
        self._idle.append(conn)
        self.host.park(conn)

    async def _open(self) -> RedisConnection:
        e = self.endpoint
        await self.host.take_slot()
        conn = RedisConnection(_OPENING)  # counted in by this method, out by its failure
        try:
            async with self.host.connecting():
                loop = asyncio.get_running_loop()
                if e.tls:
                    ctx = tls_context(
                        None if e.tls_ca_file is None else str(e.tls_ca_file),
                        None if e.tls_cert_file is None else str(e.tls_cert_file),
                        None if e.tls_key_file is None else str(e.tls_key_file),
                    )
                    await loop.create_connection(lambda: conn, e.host, e.port, ssl=ctx)
                else:
                    await loop.create_connection(lambda: conn, e.host, e.port)
            hello: list[Command] = []
            if e.password is not None:
                user = () if e.username is None else (e.username,)
                hello.append(("AUTH", *user, e.password))
            hello.append(("CLIENT", "SETNAME", CLIENT_NAME))
            _check(await conn.request(hello))
        except BaseException:
            conn.close()
            self.host.give_slot()
            raise
        conn.owner = self
        return conn

    def connection_closed(self, conn: RedisConnection) -> None:
        """A connection closed (by us, the server, or the host's idle sweep or cap)."""
        self.host.unpark(conn)
        self.host.give_slot()
        if self._shared is conn:
            self._shared = None
        if conn in self._idle:
            self._idle.remove(conn)
        self._count -= 1
        self._wake(None)

    def close(self) -> None:
        """Close the idle connections; one in use closes when its request ends."""
        self.size = 0
        for conn in list(self._idle):
            conn.close()

    @property
    def connections(self) -> int:
        """Connections open or being opened now."""
        return self._count


def _check(replies: list[Reply]) -> None:
    """Raise the first error reply (AUTH refused, maxclients reached, ...)."""
    for reply in replies:
        if isinstance(reply, RedisError):
            raise reply


class _Opening:
    """The owner of a connection being opened: RedisLink._open counts it in or out itself."""

    def connection_closed(self, conn: RedisConnection) -> None:
        pass


_OPENING = _Opening()
