"""Probing one target's health layers, for the exporter and the remediator alike.

connectivity  PING and its round trip                  health_check.ping_timeout_seconds
systemd       `systemctl is-active UNIT` over SSH       health_check.systemd_timeout_seconds
performance   INFO (the exporter scrapes more)          health_check.performance_timeout_seconds

A probe never raises: every failure, the deadline included, becomes a failed result whose
`reason` is one of the fixed `Reason` values. A `Prober` keeps its target's Redis connection
(redis_autoheal/links.py: one, closed when idle, under a per-host cap) and shares its host's
SSH connection; an ACL user needs `+ping +info +client|setname` (the client names itself
redis-autoheal, for CLIENT LIST), and `+config|get` for maxclients on Redis before 7.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, TypeVar

from redis_autoheal.commands import IsActive
from redis_autoheal.errors import (
    HostKeyError,
    RedisAuthError,
    RedisConnectionError,
    RedisLoadingError,
    RedisPermissionError,
    RedisProtocolError,
    RedisReplyError,
    SshAuthError,
    SshCommandTimeout,
    SshConnectError,
    SshError,
)
from redis_autoheal.links import RedisHosts, RedisLink
from redis_autoheal.logs import target_logger
from redis_autoheal.redis_client import parse_info
from redis_autoheal.units import RUNNING, UNIT_STATES, UNKNOWN_STATE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

    from redis_autoheal.config import HealthCheck, Target
    from redis_autoheal.ssh import SshHost

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Layer(StrEnum):
    """One of the runbook's health layers; the value is the `layer` label."""

    CONNECTIVITY = "connectivity"
    SYSTEMD = "systemd"
    PERFORMANCE = "performance"


class Reason(StrEnum):
    """Why a layer failed: the `reason` label of `redis_probe_error`, from a fixed set."""

    TIMEOUT = "timeout"  # no answer before the layer's deadline
    REFUSED = "refused"  # TCP connection refused: nothing listens on the port
    UNREACHABLE = "unreachable"  # no route to the host, or its name does not resolve
    CONNECTION_LOST = "connection_lost"  # reset or closed by the server mid-command
    MAX_CLIENTS = "max_clients"  # Redis refused the connection: maxclients reached
    AUTH = "auth"  # wrong password, unknown ACL user, or a password is needed
    PERMISSION = "permission"  # the ACL user may not run PING or INFO
    TLS = "tls"  # TLS handshake or certificate check failed
    LOADING = "loading"  # Redis is loading its dataset into memory
    PROTOCOL = "protocol"  # an unexpected reply or a Redis error reply
    SSH_NOT_CONFIGURED = "ssh_not_configured"  # the target has no `ssh` section
    SSH_AUTH = "ssh_auth"  # the SSH server refused our key
    HOST_KEY = "host_key"  # the host key is unknown or changed: refused
    SSH_TIMEOUT = "ssh_timeout"  # the SSH connection was not set up in time
    SSH_REFUSED = "ssh_refused"  # nothing listens on the SSH port
    SSH_UNREACHABLE = "ssh_unreachable"  # no route to the SSH host
    SSH_ERROR = "ssh_error"  # another SSH failure, or the connection was lost
    COMMAND_FAILED = "command_failed"  # systemctl ran but printed no state
    UNKNOWN_STATE = "unknown_state"  # systemctl printed a state outside UNIT_STATES
    ERROR = "error"  # anything else: a bug, logged with its traceback


REDIS_REASONS = (
    Reason.TIMEOUT,
    Reason.REFUSED,
    Reason.UNREACHABLE,
    Reason.CONNECTION_LOST,
    Reason.MAX_CLIENTS,
    Reason.AUTH,
    Reason.PERMISSION,
    Reason.TLS,
    Reason.LOADING,
    Reason.PROTOCOL,
    Reason.ERROR,
)
SSH_REASONS = (
    Reason.TIMEOUT,
    Reason.SSH_NOT_CONFIGURED,
    Reason.SSH_AUTH,
    Reason.HOST_KEY,
    Reason.SSH_TIMEOUT,
    Reason.SSH_REFUSED,
    Reason.SSH_UNREACHABLE,
    Reason.SSH_ERROR,
    Reason.COMMAND_FAILED,
    Reason.UNKNOWN_STATE,
    Reason.ERROR,
)
LAYER_REASONS: dict[Layer, tuple[Reason, ...]] = {
    Layer.CONNECTIVITY: REDIS_REASONS,
    Layer.SYSTEMD: SSH_REASONS,
    Layer.PERFORMANCE: REDIS_REASONS,
}

MESSAGE_MAX = 300
PROBE_CONNECTIONS = 1  # Redis connections a target's probes share: their layers take turns
_SHARED_HOSTS = RedisHosts()  # for probers not given their own (the remediator's)


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerResult:
    """What one layer's probe found; `reason` and `message` are set when it failed."""

    layer: Layer
    success: bool
    duration_seconds: float
    reason: Reason | None = None
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectivityResult(LayerResult):
    latency_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemdResult(LayerResult):
    unit: str = ""
    ssh_up: bool = False
    state: str | None = None  # one of UNIT_STATES or UNKNOWN_STATE; None when not read


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceResult(LayerResult):
    info: Mapping[str, str] = field(default_factory=dict)  # INFO's fields, as text
    maxclients: str | None = None  # from INFO (Redis >= 7), else CONFIG GET


def one_line(text: str) -> str:
    """A message fit for one log line: whitespace runs collapsed, bounded in length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_MAX else flat[: MESSAGE_MAX - 3] + "..."


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from or while handling, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_UNREACHABLE_ERRNOS = frozenset(
    (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL)
)
ReasonTable = tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Reason], ...]

# What the connection raised or Redis replied, then (walking down what it was raised from or
# while handling) the socket or TLS error beneath.
_REDIS_ERRORS: ReasonTable = (
    (RedisAuthError, Reason.AUTH),
    (RedisPermissionError, Reason.PERMISSION),
    (RedisLoadingError, Reason.LOADING),
)
_REDIS_CAUSES: ReasonTable = (
    (ssl.SSLError, Reason.TLS),
    (ConnectionRefusedError, Reason.REFUSED),
    (TimeoutError, Reason.TIMEOUT),
    (socket.gaierror, Reason.UNREACHABLE),
    ((ConnectionResetError, BrokenPipeError, ConnectionAbortedError), Reason.CONNECTION_LOST),
)
_SSH_CAUSES: ReasonTable = (
    (TimeoutError, Reason.SSH_TIMEOUT),
    (ConnectionRefusedError, Reason.SSH_REFUSED),
    (socket.gaierror, Reason.SSH_UNREACHABLE),
)


def _lookup(error: BaseException, table: ReasonTable) -> Reason | None:
    for types, reason in table:
        if isinstance(error, types):
            return reason
    return None


def _cause_reason(error: BaseException, table: ReasonTable, unreachable: Reason) -> Reason | None:
    for cause in _causes(error):
        reason = _lookup(cause, table)
        if reason is not None:
            return reason
        if isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS:
            return unreachable
    return None


def redis_reason(error: BaseException) -> Reason:
    """Classify a Redis failure: by its type, or the socket or TLS error beneath it."""
    reason = _lookup(error, _REDIS_ERRORS) or _cause_reason(
        error, _REDIS_CAUSES, Reason.UNREACHABLE
    )
    if reason is not None:
        return reason
    if isinstance(error, RedisConnectionError):
        if "max number of clients" in str(error):
            return Reason.MAX_CLIENTS
        return Reason.CONNECTION_LOST
    if isinstance(error, RedisReplyError | RedisProtocolError):
        return Reason.PROTOCOL
    return Reason.ERROR


def ssh_reason(error: SshError) -> Reason:
    """Classify an SSH failure by its type and the socket error underneath."""
    if isinstance(error, HostKeyError):
        return Reason.HOST_KEY
    if isinstance(error, SshAuthError):
        return Reason.SSH_AUTH
    if isinstance(error, SshCommandTimeout):
        return Reason.TIMEOUT
    if not isinstance(error, SshConnectError):
        return Reason.SSH_ERROR  # the connection was lost while the command ran
    return _cause_reason(error, _SSH_CAUSES, Reason.SSH_UNREACHABLE) or Reason.SSH_ERROR


class Prober:
    """Probes one target's layers over connections kept for the prober's life."""

    __slots__ = (
        "_last_reason",
        "_probe_slots",
        "_state",
        "health",
        "link",
        "ssh",
        "target",
    )

    result_types: ClassVar[dict[Layer, type[LayerResult]]] = {
        Layer.CONNECTIVITY: ConnectivityResult,
        Layer.SYSTEMD: SystemdResult,
        Layer.PERFORMANCE: PerformanceResult,
    }

    def __init__(
        self,
        target: Target,
        health: HealthCheck,
        ssh: SshHost | None,
        *,
        ping_connections: int = 0,
        hosts: RedisHosts | None = None,
    ) -> None:
        self.target = target
        self.health = health
        self.ssh = ssh
        # Probes share PROBE_CONNECTIONS (a connectivity and a performance layer take turns);
        # `ping_connections` more are kept for ping(), so that no flood of probes delays it.
        # Each layer's deadline is enforced around the whole layer (connect, AUTH, command).
        host = (hosts or _SHARED_HOSTS).host(target.redis.host)
        self.link = RedisLink(target.redis, host, PROBE_CONNECTIONS + ping_connections)
        self._probe_slots = asyncio.Semaphore(PROBE_CONNECTIONS) if ping_connections else None
        self._state = 0  # probes running now, times 4, + 1 once retired, + 2 once closed
        self._last_reason: list[Reason | None] | None = None  # per layer, once one failed

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """Made when needed (an outcome changed), not kept: 400 bytes a target otherwise."""
        return target_logger(logger, self.target.name)

    @property
    def _retired(self) -> bool:
        return bool(self._state & 1)

    @property
    def closed(self) -> bool:
        return bool(self._state & 2)

    @property
    def running(self) -> int:
        """How many probes are running now."""
        return self._state >> 2

    def timeout(self, layer: Layer) -> float:
        health = self.health
        if layer is Layer.CONNECTIVITY:
            return health.ping_timeout_seconds
        if layer is Layer.SYSTEMD:
            return health.systemd_timeout_seconds
        return health.performance_timeout_seconds

    async def probe(self, layers: tuple[Layer, ...], budget: float | None) -> list[LayerResult]:
        """Run `layers` concurrently, each within min(its timeout, budget) seconds."""
        self._state += 4
        try:
            if len(layers) == 1:
                return [await self.probe_layer(layers[0], budget)]
            # The others in tasks of their own, the first in this one: cheaper than gather's
            # task per layer (a sixth of an idle target's `all` probe). A systemd layer without
            # an ssh section asks nothing: it gets no task, and is answered in turn.
            others = {
                x: asyncio.ensure_future(self.probe_layer(x, budget))
                for x in layers[1:]
                if x is not Layer.SYSTEMD or self.ssh is not None
            }
            try:
                first = await self.probe_layer(layers[0], budget)
                rest = [
                    await (others[x] if x in others else self.probe_layer(x, budget))
                    for x in layers[1:]
                ]
                return [first, *rest]
            finally:
                for task in others.values():  # the request was cancelled: none left running
                    task.cancel()
        finally:
            self._state -= 4
            if self._state == 1:  # retired, and the last probe ended
                await self.close()

    async def retire(self) -> None:
        """Close the connections now, or when the probes running on them end."""
        self._state |= 1
        if self._state == 1:
            await self.close()

    async def probe_layer(self, layer: Layer, budget: float | None) -> LayerResult:
        """One layer within min(its timeout, budget) seconds; a change of outcome is logged."""
        seconds = self.timeout(layer)
        if budget is not None:
            seconds = min(seconds, budget)
        slots = None if layer is Layer.SYSTEMD else self._probe_slots
        result = await self._measure(layer, seconds, slots)
        self._note(result)
        return result

    async def ping(self, timeout_seconds: float | None = None) -> ConnectivityResult:
        """One PING within `timeout_seconds` (the layer's timeout by default), not logged:
        a caller waiting for Redis to come up or go down expects failures."""
        seconds = self.timeout(Layer.CONNECTIVITY) if timeout_seconds is None else timeout_seconds
        result = await self._measure(Layer.CONNECTIVITY, seconds)
        if not isinstance(result, ConnectivityResult):  # result_types says it is one
            raise TypeError(f"connectivity probe gave a {type(result).__name__}")
        return result

    async def _measure(
        self, layer: Layer, seconds: float, slots: asyncio.Semaphore | None = None
    ) -> LayerResult:
        started = time.perf_counter()
        try:
            body = self._body(layer)
            async with asyncio.timeout(seconds):
                if slots is None:
                    return await body(started, seconds)
                async with slots:
                    return await body(started, seconds)
        except TimeoutError:
            return self._failed(layer, started, Reason.TIMEOUT, f"no answer within {seconds:g}s")
        except SshError as e:
            return self._failed(layer, started, ssh_reason(e), str(e))
        except Exception as e:  # every failure is a failed probe, never a 500
            reason = redis_reason(e)
            if reason is Reason.ERROR:
                self.log.exception("%s probe failed unexpectedly", layer)
            return self._failed(layer, started, reason, f"{self.target.redis.address}: {e}")

    def _body(self, layer: Layer) -> Callable[[float, float], Awaitable[LayerResult]]:
        if layer is Layer.CONNECTIVITY:
            return self._connectivity
        if layer is Layer.SYSTEMD:
            return self._systemd
        return self._performance

    def _failed(self, layer: Layer, started: float, reason: Reason, message: str) -> LayerResult:
        duration = time.perf_counter() - started
        kind = self.result_types[layer]
        extra = {"unit": self.target.unit} if layer is Layer.SYSTEMD else {}
        return kind(
            layer=layer,
            success=False,
            duration_seconds=duration,
            reason=reason,
            message=one_line(message),
            **extra,
        )

    async def _once_more_if_closed(self, call: Callable[[RedisLink], Awaitable[T]]) -> T:
        """Run `call`; if a kept connection turns out closed by the server, once more.

        A restart of Redis (or its idle `timeout`) closes the connections the pool keeps; the
        next command on one fails although Redis is up. The failed connection is dropped, so
        the second try opens a new one and reports what is true now: up, or refused.
        """
        try:
            return await call(self.link)
        except RedisConnectionError as e:
            if redis_reason(e) is not Reason.CONNECTION_LOST:
                raise
        return await call(self.link)

    async def _connectivity(self, started: float, _seconds: float) -> LayerResult:
        latency = await self._once_more_if_closed(ping)
        return ConnectivityResult(
            layer=Layer.CONNECTIVITY,
            success=True,
            duration_seconds=time.perf_counter() - started,
            latency_seconds=latency,
        )

    async def _systemd(self, started: float, seconds: float) -> LayerResult:
        if self.ssh is None:
            message = "no ssh section for this target: the unit's state cannot be read"
            return self._failed(Layer.SYSTEMD, started, Reason.SSH_NOT_CONFIGURED, message)
        ran = await self.ssh.run(IsActive(self.target.systemd_unit), timeout_seconds=seconds)
        words = ran.stdout.split()
        reason: Reason | None = None
        message = ""
        state: str | None = None
        if not words:
            reason = Reason.COMMAND_FAILED
            err = ran.stderr or "no output"
            message = f"{ran.line!r} exited {ran.exit_code} without a state: {err}"
        elif words[0] in UNIT_STATES:
            state = words[0]
        else:
            state, reason = UNKNOWN_STATE, Reason.UNKNOWN_STATE
            message = f"{ran.line!r} printed a state outside {UNIT_STATES}: {ran.stdout!r}"
        return SystemdResult(
            layer=Layer.SYSTEMD,
            success=state in RUNNING,
            duration_seconds=time.perf_counter() - started,
            reason=reason,
            message=one_line(message),
            unit=self.target.unit,
            ssh_up=True,
            state=state,
        )

    async def _performance(self, started: float, _seconds: float) -> LayerResult:
        fields = await self._once_more_if_closed(info)
        maxclients = fields.get("maxclients")
        if maxclients is None:  # Redis before 7; an ACL user may not run CONFIG GET
            (reply,), _ = await self.link.request([("CONFIG", "GET", "maxclients")])
            if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], bytes):
                maxclients = reply[1].decode()
        return PerformanceResult(
            layer=Layer.PERFORMANCE,
            success=True,
            duration_seconds=time.perf_counter() - started,
            info=fields,
            maxclients=maxclients,
        )

    def _note(self, result: LayerResult) -> None:
        """Log a layer's failure when it starts or its reason changes, and its recovery."""
        index = _LAYER_INDEX[result.layer]
        last = None if self._last_reason is None else self._last_reason[index]
        if result.reason == last:
            return
        if self._last_reason is None:
            self._last_reason = [None, None, None]
        self._last_reason[index] = result.reason
        if result.reason is None:
            if last is not None:
                self.log.info("%s probe succeeds again", result.layer)
        else:
            self.log.warning(
                "%s probe failed (%s): %s", result.layer, result.reason, result.message
            )

    async def close(self) -> None:
        if self._state & 2:
            return
        self._state |= 2
        self.link.close()
        await asyncio.sleep(0)  # the sockets close in the loop's next turn: let it come


_LAYER_INDEX = {layer: i for i, layer in enumerate(Layer)}


async def ping(link: RedisLink) -> float:
    """Send PING and return its round trip in seconds (opening a connection not counted);
    raise on any error or a reply other than PONG."""
    started = time.perf_counter()
    (answer,), waited = await link.request([("PING",)])
    elapsed = time.perf_counter() - started - waited
    if isinstance(answer, Exception):
        raise answer
    if answer != b"PONG":
        raise RedisReplyError(f"PING answered {answer!r}, not PONG")
    return max(elapsed, 0.0)


async def info(link: RedisLink) -> dict[str, str]:
    """INFO's fields as `field -> value` text (keyspace lines keep their raw value)."""
    (reply,), _ = await link.request([("INFO",)])
    if isinstance(reply, Exception):
        raise reply
    if not isinstance(reply, bytes):
        raise RedisReplyError(f"INFO answered {type(reply).__name__}, not text")
    return parse_info(reply.decode("utf-8", "replace"))
