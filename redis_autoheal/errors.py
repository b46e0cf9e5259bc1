"""The exception tree of redis-autoheal, in one place.

    AutohealError
    ├── ConfigError             the config file (or a file it names) is wrong: one line, key first
    ├── CommandRejected         a command outside the runbook's whitelist; raised before any I/O
    ├── InitRefused             `redis-autoheal init` stopped before changing anything: why
    ├── SshError                an SSH command could not run to completion
    │   ├── SshConnectError     TCP connect, handshake or authentication failed or timed out
    │   │   └── HostKeyError    the host key is unknown or changed: refused, never accepted
    │   └── SshCommandTimeout   the command started but ran past its timeout: it was cut
    │                           (KILL sent) and has no exit code
    └── RemediatorError         raised by the remediator only
        ├── AuditWriteError     an audit event could not be written, flushed and fsync'd:
        │                       the action it records must not proceed (fail closed)
        ├── AuditReadError      the audit log or one of its backups cannot be read (review)
        ├── InvalidPayload      a webhook body that is not an Alertmanager v4 notification
        ├── BreakerStateError   the persisted circuit-breaker state cannot be read or written
        ├── NoSshConfigured     the target has no `ssh` section: nothing can be run on it
        └── OperationRefused    a manual operation that cannot run now; nothing was run
            └── TargetBusy      another operation or a recovery holds the target

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


class InitRefused(AutohealError):
    """`init` refused or could not do its job; the message says why, and nothing was changed."""


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


class RemediatorError(AutohealError):
    """Base class of the errors only the remediator raises."""


class AuditWriteError(RemediatorError):
    """The audit log could not be written: nothing that event records may happen."""


class AuditReadError(RemediatorError):
    """The audit log or a backup of it cannot be read; the message names the file."""


class InvalidPayload(RemediatorError, ValueError):
    """The webhook body is not a valid Alertmanager notification; the message says why."""


class BreakerStateError(RemediatorError):
    """The circuit-breaker state file is unreadable, corrupt or cannot be saved."""


class NoSshConfigured(RemediatorError):
    """The target has no `ssh` section, so nothing can be run on it."""


class OperationRefused(RemediatorError):
    """A manual operation refused before it ran anything; `reason` is a short fixed code, and
    `retry_after` (seconds) says when trying again can succeed, if that is known."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(message)


class TargetBusy(OperationRefused):
    """Another manual operation or a recovery holds the target: one at a time."""

    def __init__(self, message: str, retry_after: float = 10.0) -> None:
        super().__init__("busy", message, retry_after)
