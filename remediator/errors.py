"""The remediator's branch of the exception tree (its root is `redis_autoheal.errors`).

AutohealError
└── RemediatorError
    ├── AuditWriteError     an audit event could not be written, flushed and fsync'd:
    │                       the action it records must not proceed (fail closed)
    ├── InvalidPayload      a webhook body that is not an Alertmanager v4 notification
    └── BreakerStateError   the persisted circuit-breaker state cannot be read or written
"""

from __future__ import annotations

from redis_autoheal.errors import AutohealError


class RemediatorError(AutohealError):
    """Base class of the errors only the remediator raises."""


class AuditWriteError(RemediatorError):
    """The audit log could not be written: nothing that event records may happen."""


class InvalidPayload(RemediatorError, ValueError):
    """The webhook body is not a valid Alertmanager notification; the message says why."""


class BreakerStateError(RemediatorError):
    """The circuit-breaker state file is unreadable, corrupt or cannot be saved."""
