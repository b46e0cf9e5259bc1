"""At start-up: what the last run of the remediator left unfinished, closed and re-checked.

A SIGKILL, a crash or a power cut ends the process before a recovery or a manual operation
can write its terminal event; a shutdown past its grace ends them `interrupted`
(remediator.shutdown). Either way the target may still be down, and Alertmanager will not
say so again before its `repeat_interval` (hours). So at start-up the audit log's tail (its
last 8 MiB, and the file before it if the live file was just rotated: see
`auditread.unfinished`) is read for recoveries and operations that started and were never
seen through, and for each:

- one without a terminal event gets it now: `phase: finished`, `result.outcome:
  "interrupted"`, `found_at_start: true`;
- its target is re-checked as the runbook would, once per target: a new recovery (its
  `started` event is preceded by an `auto_recovery` event with `operation: "resume"` and
  `resumed_ids`, the cut ones) reads the unit state and PINGs, and ends `healthy` with
  nothing run if the service is fine, or recovers it, counted on the circuit breaker and
  suppressed while it is open, like any other recovery.

With auto-recovery off or the target gone from the config, the `resume` event says so
(`phase: skipped`) and nothing runs. The log is assumed to be this remediator's own: two
remediators sharing one file would take each other's running recoveries for cut ones.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from remediator.audit import audit_event, utc_timestamp
from remediator.auditread import unfinished
from remediator.errors import AuditReadError, AuditWriteError

if TYPE_CHECKING:
    from redis_autoheal.config import Config
    from remediator.audit import AuditWriter
    from remediator.auditread import Unfinished
    from remediator.dispatch import Dispatcher

log = logging.getLogger(__name__)


def closing_event(cut: Unfinished) -> dict[str, Any]:
    """The terminal event of a recovery or operation found without one."""
    event = {k: v for k, v in cut.started.items() if k != "alerts"}
    event["timestamp"] = utc_timestamp()
    event["phase"] = "finished"
    event["result"] = {
        "success": False,
        "duration_seconds": None,
        "exit_code": None,
        "outcome": "interrupted",
    }
    event["outcome"] = "interrupted"
    event["reason"] = (
        "found unfinished when the remediator started again: it was stopped before it could "
        "record the end (SIGKILL, crash)"
    )
    event["found_at_start"] = True
    return event


async def resume(config: Config, audit: AuditWriter, dispatcher: Dispatcher) -> None:
    """Close and re-check what the last run left unfinished; see the module docstring.

    An audit log that cannot be read or written leaves them for the next start, logged."""
    try:
        cuts = await asyncio.to_thread(unfinished, config.audit)
    except (AuditReadError, OSError) as e:
        log.warning("cannot look for unfinished recoveries in the audit log: %s", e)
        return
    by_target: dict[str, list[Unfinished]] = {}
    for cut in cuts:
        by_target.setdefault(cut.service, []).append(cut)
    for target, found in by_target.items():
        try:
            await _resume_target(config, audit, dispatcher, target, found)
        except AuditWriteError as e:
            log.warning("%s: cannot audit the re-check of unfinished recoveries: %s", target, e)


async def _resume_target(
    config: Config,
    audit: AuditWriter,
    dispatcher: Dispatcher,
    target: str,
    found: list[Unfinished],
) -> None:
    ids = [c.id for c in found]
    closing = [closing_event(c) for c in found if not c.ended]
    skipped = None
    if config.target(target) is None:
        skipped = "the target is no longer configured"
    elif not config.auto_recovery.enabled:
        skipped = "auto_recovery.enabled is false"
    elif dispatcher.running(target) is not None:
        skipped = "a recovery is already running"
    recovery_id = None if skipped else uuid.uuid4().hex[:12]
    resumed = audit_event(
        "auto_recovery",
        service=target,
        operation="resume",
        success=None if skipped is None else False,
        phase="resumed" if skipped is None else "skipped",
        recovery_id=recovery_id,
        resumed_ids=ids,
        reason=skipped or "re-checking the target of recoveries or operations the last run cut",
    )
    await audit.write(*closing, resumed)
    log.warning(
        "%s: unfinished at start-up: %s; %s",
        target,
        ", ".join(ids),
        f"not re-checked: {skipped}" if skipped else f"re-checking as recovery {recovery_id}",
    )
    if recovery_id is not None:
        dispatcher.resume(target, recovery_id)
