"""Runs the whitelisted commands over SSH: one kept-alive connection per host, reused.

Host keys are always checked against the configured known_hosts; an unknown or changed key is
refused. Concurrent commands share the connection as separate channels, at most
`max_sessions` at a time (below sshd's MaxSessions, 10 by default). A lost connection is
dropped and re-opened by the next command; a command that never started because the cached
connection had died is retried once on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncssh

from redis_autoheal.commands import Command, command_line
from redis_autoheal.errors import HostKeyError, SshCommandTimeout, SshConnectError, SshError

if TYPE_CHECKING:
    from redis_autoheal.config import SshEndpoint

CLOSE_WAIT_SECONDS = 2.0  # how long a cut command may take to give its session back


@dataclass(frozen=True)
class CommandResult:
    """What one command did: its exit code (negative: killed by that signal) and output."""

    command: Command
    line: str
    exit_code: int
    stdout: str
    stderr: str
    duration_seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


class SshHost:
    """One SSH host and the single connection every target on it shares."""

    def __init__(self, endpoint: SshEndpoint) -> None:
        self.endpoint = endpoint
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._sessions = asyncio.Semaphore(endpoint.max_sessions)
        self.connections_opened = 0

    @property
    def label(self) -> str:
        e = self.endpoint
        return f"{e.user}@{e.host}:{e.port}"

    def timeout_for(self, command: Command) -> float:
        """The configured timeout: short for reads, long enough for a unit to start or stop."""
        e = self.endpoint
        return e.command_timeout_seconds if command.read_only else e.control_timeout_seconds

    async def run(self, command: Command, *, timeout_seconds: float | None = None) -> CommandResult:
        """Run one whitelisted command; a non-zero exit is a result, not an exception."""
        line = command_line(command)  # raises CommandRejected before any I/O
        limit = self.timeout_for(command) if timeout_seconds is None else timeout_seconds
        async with self._sessions:
            started = time.monotonic()
            process = await self._open_session(line, limit)
            completed = await self._wait(process, line, limit)
        if completed.returncode is None:  # the channel closed without an exit status
            raise SshError(self.label, f"{line!r} ended without an exit status")
        return CommandResult(
            command=command,
            line=line,
            exit_code=completed.returncode,
            stdout=_text(completed.stdout),
            stderr=_text(completed.stderr),
            duration_seconds=time.monotonic() - started,
        )

    async def _open_session(self, line: str, limit: float) -> asyncssh.SSHClientProcess[str]:
        """Start `line` in a new session of the kept connection, opening one if needed.

        The server may refuse a session for a moment: sshd still counts a session whose
        client has seen it close until it has reaped the command (MaxSessions), so a refusal
        on a live connection is retried briefly. A connection found dead is replaced once.
        """
        deadline = time.monotonic() + limit
        delay = 0.02
        replaced = False
        while True:
            conn, fresh = await self._connection()
            remaining = deadline - time.monotonic()
            try:
                # A kept connection to a host that went silent would wait for the session
                # until keepalives give up (about 45 s): it must open within the limit.
                return await asyncio.wait_for(
                    conn.create_process(line, stdin=asyncssh.DEVNULL), max(remaining, 0.001)
                )
            except TimeoutError:
                self._forget(conn)
                raise SshConnectError(
                    self.label, f"no session opened within {limit:g}s: the connection is dropped"
                ) from None
            except asyncssh.ChannelOpenError as e:
                if conn.is_closed():
                    self._forget(conn)
                    if fresh or replaced:
                        raise SshConnectError(
                            self.label, f"connection closed: {e.reason}"
                        ) from None
                    replaced = True  # the kept one had died unnoticed: one new connection
                    continue
                if time.monotonic() + delay >= deadline:
                    raise SshError(
                        self.label, f"the server refused a session: {e.reason}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except (OSError, asyncssh.Error) as e:
                self._forget(conn)
                raise SshError(self.label, f"connection lost before {line!r}: {e}") from None

    async def _wait(
        self, process: asyncssh.SSHClientProcess[str], line: str, limit: float
    ) -> asyncssh.SSHCompletedProcess:
        try:
            return await process.wait(timeout=limit)
        except asyncssh.TimeoutError:
            # Closing the channel alone leaves the command running and its session held
            # until it ends; sshd (OpenSSH >= 8.1) delivers a signal request to it.
            await self._abandon(process)
            raise SshCommandTimeout(self.label, f"{line!r} timed out after {limit:g}s") from None
        except (OSError, asyncssh.Error) as e:
            raise SshError(self.label, f"connection lost during {line!r}: {e}") from None
        finally:
            process.close()

    @staticmethod
    async def _abandon(process: asyncssh.SSHClientProcess[str]) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            process.send_signal("KILL")
        process.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait_closed(), CLOSE_WAIT_SECONDS)

    async def _connection(self) -> tuple[asyncssh.SSHClientConnection, bool]:
        """The kept-alive connection, opened if there is none; True if it was just opened."""
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn, False
            self._conn = await self._connect()
            self.connections_opened += 1
            return self._conn, True

    async def _connect(self) -> asyncssh.SSHClientConnection:
        e = self.endpoint
        try:
            return await asyncssh.connect(
                e.host,
                port=e.port,
                username=e.user,
                client_keys=[str(e.key_file)],
                known_hosts=str(e.known_hosts),
                connect_timeout=e.connect_timeout_seconds,
                keepalive_interval=e.keepalive_seconds,
                keepalive_count_max=3,
                agent_path=None,
                config=[],  # no ~/.ssh/config: only what our config says applies
                preferred_auth="publickey",
                password=None,
                kbdint_auth=False,
            )
        except asyncssh.HostKeyNotVerifiable as err:
            raise HostKeyError(
                self.label, f"host key not verified against {e.known_hosts}: {err.reason}"
            ) from None
        except asyncssh.PermissionDenied as err:
            raise SshConnectError(self.label, f"authentication failed: {err.reason}") from None
        except TimeoutError:
            raise SshConnectError(
                self.label, f"connect timed out after {e.connect_timeout_seconds:g}s"
            ) from None
        except asyncssh.Error as err:
            raise SshConnectError(self.label, f"SSH error: {err.reason}") from None
        except (OSError, ValueError) as err:  # refused, unreachable, unreadable key
            raise SshConnectError(self.label, f"cannot connect: {err}") from None

    def _forget(self, conn: asyncssh.SSHClientConnection) -> None:
        if self._conn is conn:
            self._conn = None
        conn.close()

    async def close(self) -> None:
        """Close the connection, if any."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()


class SshPool:
    """The SshHost of each distinct endpoint: targets on one host share one connection."""

    def __init__(self) -> None:
        self._hosts: dict[tuple[str, int, str, str, str], SshHost] = {}

    def host(self, endpoint: SshEndpoint) -> SshHost:
        key = (
            endpoint.host,
            endpoint.port,
            endpoint.user,
            str(endpoint.key_file),
            str(endpoint.known_hosts),
        )
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = SshHost(endpoint)
        return host

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(h.close() for h in self._hosts.values()))
        self._hosts.clear()
