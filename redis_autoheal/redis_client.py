"""Redis clients for a configured target: auth from password_file, ACL user, TLS, no retries.

Both services measure health, so a client must report a failure at once: redis-py retries a
failed command by default, which would stretch a 5 s PING timeout into several; here it never
retries, and every wait is bounded by `timeout_seconds`.
"""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

if TYPE_CHECKING:
    from redis_autoheal.config import RedisEndpoint


def make_client(
    endpoint: RedisEndpoint, *, timeout_seconds: float, max_connections: int = 2
) -> aioredis.Redis:
    """A client with a small pool of kept-alive connections to one Redis server."""
    tls: dict[str, Any] = {}
    if endpoint.tls:
        tls = {  # SSLConnection is TLS already: it takes no `ssl` flag (TypeError if given)
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
            "ssl_ca_certs": str(endpoint.tls_ca_file) if endpoint.tls_ca_file else None,
            "ssl_certfile": str(endpoint.tls_cert_file) if endpoint.tls_cert_file else None,
            "ssl_keyfile": str(endpoint.tls_key_file) if endpoint.tls_key_file else None,
            "ssl_check_hostname": True,
        }
    pool = aioredis.BlockingConnectionPool(
        host=endpoint.host,
        port=endpoint.port,
        username=endpoint.username,
        password=endpoint.password,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        timeout=timeout_seconds,  # how long to wait for a free connection of the pool
        connection_class=aioredis.SSLConnection if endpoint.tls else aioredis.Connection,
        client_name="redis-autoheal",
        **tls,
    )
    client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
    client.auto_close_connection_pool = True  # as Redis.from_pool: aclose() closes the pool too
    return client


async def ping(client: aioredis.Redis) -> float:
    """Send PING and return the round trip in seconds; raise on any error or a non-PONG."""
    started = time.perf_counter()
    answer = await client.ping()
    elapsed = time.perf_counter() - started
    if answer is not True:
        raise aioredis.ResponseError(f"PING answered {answer!r}, not PONG")
    return elapsed


async def info(client: aioredis.Redis, *sections: str) -> dict[str, str]:
    """One INFO round trip, as `field -> value` text (keyspace lines keep their raw value).

    redis-py's `client.info()` converts every one of ~150 fields to a number or dict; a
    scraper needs a few, so the reply is read raw and split once. No retries, as above.
    """
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py: untyped
    try:
        await conn.send_command("INFO", *sections)
        reply = await conn.read_response(disable_decoding=True)
    finally:
        await pool.release(conn)
    if not isinstance(reply, bytes):
        raise aioredis.ResponseError(f"INFO answered {type(reply).__name__}, not text")
    return parse_info(reply.decode("utf-8", "replace"))


def parse_info(text: str) -> dict[str, str]:
    """Split INFO's `field:value` lines, skipping `# Section` headers and blank lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and line[0] != "#":
            name, _, value = line.partition(":")
            fields[name] = value
    return fields


async def config_get(client: aioredis.Redis, name: str) -> str | None:
    """One `CONFIG GET name`: its value, or None if the server does not know it."""
    reply = await client.config_get(name)
    value: object = reply.get(name)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
