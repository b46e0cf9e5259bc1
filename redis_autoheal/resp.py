"""One Redis connection speaking RESP2, as small as a kept connection can be.

A fleet of ten thousand targets keeps ten thousand of these, so one is an asyncio protocol
with slots and a byte buffer, nothing more: no client object, pool, parser object or
response-callback table per connection (a redis-py client and pool cost about 40 KiB a
target). Commands go out in one write and their replies come back as a list: bytes, int,
list, None, or for an error reply the RedisError it stands for (returned in its place, not
raised). Errors raised are RedisErrors too (redis_autoheal/errors.py) or the socket's own.

A request has no timeout of its own: the caller bounds it (asyncio.timeout); a request cut
short leaves replies unread, so the connection is closed rather than used again.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from redis_autoheal.errors import (
    RedisAuthError,
    RedisConnectionError,
    RedisError,
    RedisLoadingError,
    RedisPermissionError,
    RedisProtocolError,
    RedisReplyError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

Reply = object  # bytes, int, list, None, or the RedisError of an error reply
Command = tuple[str, ...]

CLIENT_NAME = "redis-autoheal"  # CLIENT SETNAME: the name CLIENT LIST shows
_CRLF = b"\r\n"


class _Incomplete(Exception):
    """The buffer ends before the reply does: wait for more bytes."""


# Error replies that mean more than RedisReplyError, by their first word (then their text).
_ERRORS: dict[str, type[RedisError]] = {
    "WRONGPASS": RedisAuthError,
    "NOAUTH": RedisAuthError,
    "NOPERM": RedisPermissionError,
    "LOADING": RedisLoadingError,
}
_ERR_TEXTS: dict[str, type[RedisError]] = {
    "ERR max number of clients reached": RedisConnectionError,
    "ERR invalid password": RedisAuthError,
    "ERR wrong number of arguments for 'auth' command": RedisAuthError,  # a password, none set
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?": RedisAuthError,
}


def error_reply(text: str) -> RedisError:
    """The RedisError an error reply stands for."""
    kind = _ERR_TEXTS.get(text) or _ERRORS.get(text.split(" ", 1)[0], RedisReplyError)
    return kind(text)


def pack(commands: Sequence[Command]) -> bytes:
    """Commands in RESP's request form, all in one buffer."""
    out = bytearray()
    for command in commands:
        out += b"*%d\r\n" % len(command)
        for word in command:
            data = word.encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
    return bytes(out)


def parse(buffer: bytearray, pos: int) -> tuple[Reply, int]:
    """One reply starting at `pos`, and where the next begins; _Incomplete if cut short."""
    end = buffer.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind = buffer[pos]
    line = bytes(buffer[pos + 1 : end])
    pos = end + 2
    if kind == 0x24:  # $ bulk string
        return _bulk(buffer, pos, int(line))
    if kind == 0x3A:  # : integer
        return int(line), pos
    if kind == 0x2B:  # + simple string
        return line, pos
    if kind == 0x2A:  # * array
        return _array(buffer, pos, int(line))
    if kind == 0x2D:  # - error
        return error_reply(line.decode("utf-8", "replace")), pos
    raise RedisProtocolError(f"unexpected reply type {chr(kind)!r}")


def _bulk(buffer: bytearray, pos: int, size: int) -> tuple[Reply, int]:
    if size < 0:
        return None, pos
    if len(buffer) < pos + size + 2:
        raise _Incomplete
    return bytes(buffer[pos : pos + size]), pos + size + 2


def _array(buffer: bytearray, pos: int, count: int) -> tuple[Reply, int]:
    if count < 0:
        return None, pos
    items: list[Reply] = []
    for _ in range(count):
        item, pos = parse(buffer, pos)
        items.append(item)
    return items, pos


class Owner(Protocol):
    """Who is told when a connection closes (its target's link)."""

    def connection_closed(self, conn: RedisConnection) -> None: ...


class RedisConnection(asyncio.Protocol):
    """A connected socket to Redis and the requests in flight on it, answered in order."""

    __slots__ = ("_buffer", "_out", "_pending", "_transport", "closed", "owner", "users")

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.closed = False
        self.users = 0  # requests sent or about to be: kept by RedisLink
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._out: bytearray | None = None  # requests of this turn of the loop, unsent yet
        # (replies expected, replies so far, who waits for them), oldest first
        self._pending: list[tuple[int, list[Reply], asyncio.Future[list[Reply]]]] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # a stream socket gives one
            raise TypeError(f"not a stream transport: {transport!r}")
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pending = self._pending
        pos = 0
        try:
            while pending:
                expected, replies, waiter = pending[0]
                while len(replies) < expected:
                    reply, pos = parse(buffer, pos)
                    replies.append(reply)
                del pending[0]
                if not waiter.done():
                    waiter.set_result(replies)
        except _Incomplete:
            pass
        except (ValueError, RedisProtocolError) as e:
            self._fail(RedisProtocolError(f"cannot read Redis's reply: {e}"))
            return
        if pos == len(buffer):
            # A new, empty one: a bytearray emptied by `del` keeps its memory (an INFO reply's
            # several KiB, times every kept connection).
            self._buffer = bytearray()
        else:
            del buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError("connection closed by the server")
        if self._buffer:  # it may have said why before closing (maxclients)
            try:
                reply, _ = parse(self._buffer, 0)
            except (_Incomplete, ValueError, RedisProtocolError):
                reply = None
            if isinstance(reply, RedisConnectionError):
                error = reply
        self._fail(error, exc)

    # use
    async def request(self, commands: Sequence[Command]) -> list[Reply]:
        """Send `commands` in one write; their replies, in order. Closes it if cut short.

        Requests may overlap: Redis answers them in the order they were sent. Those made in
        one turn of the event loop (a probe's PING and INFO) go out in one write."""
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[Reply]] = loop.create_future()
        self._pending.append((len(commands), [], waiter))
        if self._out is None:  # the first this turn: send them all at its end, in one write
            self._out = bytearray()
            loop.call_soon(self._flush)
        self._out += pack(commands)
        try:
            return await waiter
        except BaseException:
            if not waiter.done() or waiter.cancelled():
                self.close()  # replies left unread: never hand this connection out again
            raise

    def _flush(self) -> None:
        out, self._out = self._out, None
        if out and self._transport is not None and not self.closed:
            self._transport.write(out)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._fail(RedisConnectionError("connection closed"))

    def _fail(self, error: Exception, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        pending, self._pending = self._pending, []
        for _, _, waiter in pending:
            if not waiter.done():
                waiter.set_exception(error)
        if not self.closed:
            self.closed = True
            self._buffer = bytearray()
            self.owner.connection_closed(self)


_tls_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
_TLS_CONTEXTS_MAX = 256


def _version(path: str | None) -> tuple[str | None, int]:
    try:
        return path, 0 if path is None else Path(path).stat().st_mtime_ns
    except OSError:
        return path, -1


def tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """One context per set of TLS files as they are now, shared by the connections using them
    (a context costs more than a connection); a file replaced in place gives a new one."""
    cache_key = (_version(ca), _version(cert), _version(key))
    found = _tls_contexts.get(cache_key)
    if found is None:
        found = ssl.create_default_context(cafile=ca)
        if cert is not None:
            found.load_cert_chain(cert, key)
        if len(_tls_contexts) >= _TLS_CONTEXTS_MAX:
            _tls_contexts.clear()
        _tls_contexts[cache_key] = found
    return found
