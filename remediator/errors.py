"""The errors only the remediator raises, under redis_autoheal's AutohealError.

RemediatorError
├── AuditWriteError     an audit event could not be written, flushed and fsync'd:
│                       the action it records must not proceed (fail closed)
├── AuditReadError      the audit log or one of its backups cannot be read (review)
├── InvalidPayload      a webhook body that is not an Alertmanager v4 notification
├── BreakerStateError   the persisted circuit-breaker state cannot be read or written
├── NoSshConfigured     the target has no `ssh` section: nothing can be run on it
└── OperationRefused    a manual operation that cannot run now; nothing was run
    └── TargetBusy      another operation or a recovery holds the target
"""

from __future__ import annotations

from redis_autoheal.errors import AutohealError


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
