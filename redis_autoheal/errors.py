"""The errors of the shared core; the remediator's own are in remediator/errors.py.

    AutohealError
    ├── ConfigError             the config file (or a file it names) is wrong: one line, key first
    ├── CommandRejected         a command outside the runbook's whitelist; raised before any I/O
    ├── SshError                an SSH command could not run to completion
    │   ├── SshConnectError     TCP connect, handshake or authentication failed or timed out
    │   │   └── HostKeyError    the host key is unknown or changed: refused, never accepted
    │   └── SshCommandTimeout   the command started but ran past its timeout: it was cut
    │                           (KILL sent) and has no exit code
    └── RemediatorError         remediator/errors.py: raised by the remediator only

A command that ran and exited non-zero is not an exception: it is a result with its exit code.
"""

from __future__ import annotations


class AutohealError(Exception):
    """Base class of every error redis-autoheal raises on purpose."""


class ConfigError(AutohealError):
    """The config is invalid. The message is one line: `key.path: problem`."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class CommandRejected(AutohealError, ValueError):
    """A command, unit name or argument is outside the whitelist."""


class SshError(AutohealError):
    """An SSH command did not run to completion."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: {message}")


class SshConnectError(SshError):
    """The SSH connection could not be established (unreachable, refused, auth, timeout)."""


class HostKeyError(SshConnectError):
    """The server's host key is not in known_hosts or does not match it."""


class SshCommandTimeout(SshError):
    """The command started and ran past its timeout: KILL was sent to it (`killed` says
    whether the request could be sent) and its channel closed; it has no exit code."""

    def __init__(self, host: str, line: str, seconds: float, *, killed: bool) -> None:
        self.line = line
        self.seconds = seconds
        self.killed = killed
        signalled = "KILL sent" if killed else "KILL not sent: its channel had closed"
        super().__init__(host, f"{line!r} cut at timeout after {seconds:g}s ({signalled})")
