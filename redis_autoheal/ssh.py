"""Runs the whitelisted commands over SSH, on connections kept alive per host and reused.

Each host has two lanes, each a connection of its own with its own session budget
(`max_sessions`): actions (what recoveries and manual operations run, and the `is-active` reads
that decide and verify them) and probes (health probes, logs and status people ask for), so
that no number of waiting or timed-out probes delays an action or costs it its connection. A
connection that looks dead (a session that does not open in time) is retired: the next command
opens a new one, and the old one is closed once the commands still running on it have ended. A
command that never started because the kept connection had died is retried once.

A stream (`follow`: `journalctl -f`) holds one session of the probe lane for as long as it is
read; it ends when its connection is retired, so it is reopened on the next one.

A command's bounds are all enforced here, so that no caller's outer timeout has to: a free
session in its lane within its timeout; then the connection and the session opened within
min(`connect_timeout_seconds`, its timeout); past either, it did not run (SshError,
SshConnectError). Once started, it runs within its timeout, or is cut: its process group is
sent SIGKILL through an SSH signal request, and it is reported as SshCommandTimeout, with no
exit code. A caller that cancels a started command (its own deadline, a shutdown) gets the
same KILL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import asyncssh

from redis_autoheal.commands import Command, JournalFollow, command_line
from redis_autoheal.errors import (
    HostKeyError,
    SshAuthError,
    SshCommandTimeout,
    SshConnectError,
    SshError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redis_autoheal.config import SshEndpoint

CLOSE_WAIT_SECONDS = 2.0  # how long a cut command may take to give its session back

Connection = asyncssh.SSHClientConnection
Process = asyncssh.SSHClientProcess[str]


class Lane(StrEnum):
    """Which of a host's two connections carries a command; see the module docstring."""

    ACTION = "action"
    PROBE = "probe"


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


def _kill(process: Process) -> bool:
    """Send KILL to the remote command's process group; False if its channel had closed.

    sshd (OpenSSH >= 7.9) delivers it with killpg() as the login user: `sudo` dies and its
    session is given back; the root `systemctl` under it runs on, as a client killed under
    real systemd would leave its job running.
    """
    try:
        process.send_signal("KILL")
    except (OSError, asyncssh.Error):
        return False
    return True


def _kill_if_opened(opening: asyncio.Future[Process]) -> None:
    """Done callback of a session open given up on: kill and close what it started late."""
    if opening.cancelled() or opening.exception() is not None:
        return
    process = opening.result()
    _kill(process)
    process.close()


class _Lane:
    """One lane: its kept connection, session budget, and the connections still in use."""

    def __init__(self, max_sessions: int) -> None:
        self.conn: Connection | None = None
        self.connecting = asyncio.Lock()
        self.sessions = asyncio.Semaphore(max_sessions)
        self.users: collections.Counter[Connection] = collections.Counter()
        self.streams: dict[Connection, set[asyncio.Event]] = {}  # set: end the stream
        self.opened = 0

    def retire(self, conn: Connection) -> None:
        """Open no more sessions on `conn`; it is closed when its last command ends.

        Its streams end now: they would otherwise hold it until keepalives give up.
        """
        if self.conn is conn:
            self.conn = None
        for retired in self.streams.pop(conn, set()):
            retired.set()
        if not self.users[conn]:
            self.users.pop(conn, None)
            conn.close()

    def release(self, conn: Connection) -> None:
        self.users[conn] -= 1
        if self.users[conn] <= 0:
            del self.users[conn]
            if self.conn is not conn:
                conn.close()

    def connections(self) -> set[Connection]:
        return {*self.users, *([self.conn] if self.conn else [])}


class SshHost:
    """One SSH host and the two connections every target on it shares."""

    def __init__(self, endpoint: SshEndpoint) -> None:
        self.endpoint = endpoint
        self._lanes = {lane: _Lane(endpoint.max_sessions) for lane in Lane}

    @property
    def label(self) -> str:
        e = self.endpoint
        return f"{e.user}@{e.host}:{e.port}"

    @property
    def connections_opened(self) -> int:
        """How many connections were opened, both lanes together."""
        return sum(lane.opened for lane in self._lanes.values())

    def timeout_for(self, command: Command) -> float:
        """The configured timeout: short for reads, long enough for a unit to start or stop."""
        e = self.endpoint
        return e.command_timeout_seconds if command.read_only else e.control_timeout_seconds

    async def run(
        self,
        command: Command,
        *,
        timeout_seconds: float | None = None,
        lane: Lane | None = None,
    ) -> CommandResult:
        """Run one whitelisted command; a non-zero exit is a result, not an exception.

        `lane` defaults to the probe lane for a read-only command, the action lane otherwise.
        """
        line = command_line(command)  # raises CommandRejected before any I/O
        limit = self.timeout_for(command) if timeout_seconds is None else timeout_seconds
        if lane is None:
            lane = Lane.PROBE if command.read_only else Lane.ACTION
        chosen = self._lanes[lane]
        try:
            async with asyncio.timeout(limit):
                await chosen.sessions.acquire()
        except TimeoutError:
            raise SshError(
                self.label, f"{line!r} not run: no free {lane} session within {limit:g}s"
            ) from None
        try:
            started = time.monotonic()
            start_limit = min(limit, self.endpoint.connect_timeout_seconds)
            start_by = asyncio.get_running_loop().time() + start_limit
            process, conn = await self._open_session(chosen, line, start_by, start_limit)
            try:
                completed = await self._wait(process, line, limit)
            finally:
                chosen.release(conn)
        finally:
            chosen.sessions.release()
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

    @contextlib.asynccontextmanager
    async def follow(self, command: JournalFollow) -> AsyncIterator[AsyncIterator[str]]:
        """Start a command that does not end by itself, on the probe lane; its output's lines.

        The session is held until the block is left, which kills the command. The lines stop
        (or raise SshError) when the command, the channel or the connection ends, and when a
        command on the lane finds the connection dead and retires it. Not started within
        `connect_timeout_seconds`: SshError or SshConnectError, as for `run`.
        """
        line = command_line(command)  # raises CommandRejected before any I/O
        limit = self.endpoint.connect_timeout_seconds
        chosen = self._lanes[Lane.PROBE]
        try:
            async with asyncio.timeout(limit):
                await chosen.sessions.acquire()
        except TimeoutError:
            raise SshError(
                self.label, f"{line!r} not run: no free {Lane.PROBE} session within {limit:g}s"
            ) from None
        try:
            start_by = asyncio.get_running_loop().time() + limit
            process, conn = await self._open_session(chosen, line, start_by, limit)
            retired = asyncio.Event()
            chosen.streams.setdefault(conn, set()).add(retired)
            try:
                yield self._lines(process, line, retired)
            finally:
                streams = chosen.streams.get(conn)
                if streams is not None:
                    streams.discard(retired)
                    if not streams:
                        del chosen.streams[conn]
                _kill(process)
                process.close()
                chosen.release(conn)
        finally:
            chosen.sessions.release()

    async def _lines(
        self, process: Process, line: str, retired: asyncio.Event
    ) -> AsyncIterator[str]:
        try:
            while text := await self._next_line(process, line, retired):
                yield text
            # The output ended: say how (a missing sudoers rule, journalctl refusing an option).
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                ended = await process.wait()
        except TimeoutError:
            raise SshError(self.label, f"{line!r} stopped writing but did not end") from None
        except (OSError, asyncssh.Error) as e:
            raise SshError(self.label, f"connection lost during {line!r}: {e}") from None
        code, err = ended.returncode, " ".join(_text(ended.stderr).split())[:300]
        raise SshError(self.label, f"{line!r} ended (exit status {code}): {err or 'no message'}")

    async def _next_line(self, process: Process, line: str, retired: asyncio.Event) -> str:
        """The next line; "" at the end. A dead connection's channel may never report its end:
        its retirement does."""
        reading = asyncio.ensure_future(process.stdout.readline())
        ending = asyncio.ensure_future(retired.wait())
        try:
            await asyncio.wait((reading, ending), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ending.cancel()
            if not reading.done():
                reading.cancel()
        if not reading.done() or reading.cancelled():
            raise SshError(self.label, f"{line!r} cut: its connection was found dead")
        return reading.result()

    async def _open_session(
        self, lane: _Lane, line: str, start_by: float, start_limit: float
    ) -> tuple[Process, Connection]:
        """Start `line` in a new session on the lane's connection, by `start_by` (loop time).

        The server may refuse a session for a moment: sshd still counts a session whose
        client has seen it close until it has reaped the command (MaxSessions), so a refusal
        on a live connection is retried briefly. A connection found dead is replaced once.
        The connection returned is counted as in use until `lane.release(conn)`.
        """
        delay = 0.02
        replaced = False
        loop = asyncio.get_running_loop()
        while True:
            conn, fresh = await self._connection(lane, line, start_by, start_limit)
            lane.users[conn] += 1
            process: Process | None = None
            try:
                process = await self._create_process(lane, conn, line, start_by, start_limit)
            except asyncssh.ChannelOpenError as e:
                if conn.is_closed():
                    lane.retire(conn)
                    if fresh or replaced:
                        raise SshConnectError(
                            self.label, f"connection closed: {e.reason}"
                        ) from None
                    replaced = True  # the kept one had died unnoticed: one new connection
                else:
                    if loop.time() + delay >= start_by:
                        raise SshError(
                            self.label,
                            f"{line!r} not run: the server refused a session: {e.reason}",
                        ) from None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
            except (OSError, asyncssh.Error) as e:
                lane.retire(conn)
                raise SshError(self.label, f"connection lost before {line!r}: {e}") from None
            finally:
                if process is None:
                    lane.release(conn)
            if process is not None:
                return process, conn

    async def _create_process(
        self, lane: _Lane, conn: Connection, line: str, start_by: float, start_limit: float
    ) -> Process:
        # asyncssh, cancelled while opening, would leave a half-open channel whose command may
        # have started: the open is left to finish, and what it started is killed.
        opening = asyncio.ensure_future(conn.create_process(line, stdin=asyncssh.DEVNULL))
        try:
            async with asyncio.timeout_at(start_by):
                return await asyncio.shield(opening)
        except TimeoutError:
            opening.add_done_callback(_kill_if_opened)
            # A kept connection to a host gone silent would wait for the session until
            # keepalives give up (about 45 s): the next command gets a new connection.
            lane.retire(conn)
            raise SshConnectError(
                self.label,
                f"{line!r} not run: no session opened within {start_limit:g}s "
                "(the next command opens a new connection)",
            ) from None
        except asyncio.CancelledError:
            opening.add_done_callback(_kill_if_opened)
            raise

    async def _wait(
        self, process: Process, line: str, limit: float
    ) -> asyncssh.SSHCompletedProcess:
        try:
            return await process.wait(timeout=limit)
        except asyncssh.TimeoutError:
            # Closing the channel alone would leave the command running and its session held
            # until it ends.
            killed = _kill(process)
            process.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait_closed(), CLOSE_WAIT_SECONDS)
            raise SshCommandTimeout(self.label, line, limit, killed=killed) from None
        except asyncio.CancelledError:
            _kill(process)  # at once: whoever cancelled us may not wait for anything more
            raise
        except (OSError, asyncssh.Error) as e:
            raise SshError(self.label, f"connection lost during {line!r}: {e}") from None
        finally:
            process.close()

    async def _connection(
        self, lane: _Lane, line: str, start_by: float, start_limit: float
    ) -> tuple[Connection, bool]:
        """The lane's kept-alive connection, opened if there is none; True if just opened."""
        try:
            async with asyncio.timeout_at(start_by), lane.connecting:
                if lane.conn is not None and not lane.conn.is_closed():
                    return lane.conn, False
                lane.conn = await self._connect()
                lane.opened += 1
                return lane.conn, True
        except TimeoutError:
            raise SshConnectError(
                self.label, f"{line!r} not run: not connected within {start_limit:g}s"
            ) from None

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
            raise SshAuthError(self.label, f"authentication failed: {err.reason}") from None
        except TimeoutError:
            raise SshConnectError(
                self.label, f"connect timed out after {e.connect_timeout_seconds:g}s"
            ) from None
        except asyncssh.Error as err:
            raise SshConnectError(self.label, f"SSH error: {err.reason}") from None
        except (OSError, ValueError) as err:  # refused, unreachable, unreadable key
            raise SshConnectError(self.label, f"cannot connect: {err}") from None

    async def close(self) -> None:
        """Close every connection, in use or not."""
        conns: set[Connection] = set()
        for lane in self._lanes.values():
            conns |= lane.connections()
            lane.conn = None
        for conn in conns:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in conns))
