"""At start-up: close and re-check what the last run of the remediator left unfinished.

A recovery or operation cut by SIGKILL or a crash has no terminal event; one cut by shutdown
ends `interrupted`. Either way its target may still be down and Alertmanager will not repeat
the alert for hours. So the log's tail (`auditread.unfinished`) is searched; each one without
an end gets it now (`found_at_start`), and each target is re-checked once by a new recovery,
announced by an `auto_recovery` event with `operation: "resume"` (or `phase: skipped` when it
may not run).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from remediator.auditread import unfinished
from remediator.errors import AuditReadError, AuditWriteError
from remediator.events import AutoRecovery, utc_timestamp

if TYPE_CHECKING:
    from redis_autoheal.config import Config
    from remediator.audit import AuditWriter
    from remediator.auditread import Started, Unfinished
    from remediator.dispatch import Dispatcher

log = logging.getLogger(__name__)


def closing_event(cut: Unfinished) -> Started:
    """The terminal event of a recovery or operation found without one."""
    return replace(
        cut.started,
        timestamp=utc_timestamp(),
        phase="finished",
        success=False,
        duration_seconds=None,
        exit_code=None,
        outcome="interrupted",
        reason=(
            "found unfinished when the remediator started again: it was stopped before it "
            "could record the end (SIGKILL, crash)"
        ),
        found_at_start=True,
    )


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
    elif config.coordination.backend == "etcd":  # another replica may be running it now
        skipped = "with etcd, a replica takes over a cut recovery (it was still running there)"
    recovery_id = None if skipped else uuid.uuid4().hex[:12]
    resumed = AutoRecovery(
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
