"""A TargetControl as the remediator builds one for a target, for tests that drive it directly."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis_autoheal.probe import Prober
from remediator.control import StartBudget, TargetControl, TargetLock

if TYPE_CHECKING:
    from redis_autoheal.config import HealthCheck, Target
    from redis_autoheal.ssh import SshHost
    from remediator.audit import AuditWriter
    from remediator.metrics import Metrics


def target_control(
    target: Target, ssh: SshHost, writer: AuditWriter, metrics: Metrics, health: HealthCheck
) -> TargetControl:
    """Acting for real (not a dry run), with its own lock, start budget and prober on `ssh`;
    the caller closes `control.prober`."""
    return TargetControl(
        target,
        ssh,
        writer,
        metrics,
        dry_run=False,
        prober=Prober(target, health, ssh),
        lock=TargetLock(),
        start_budget=StartBudget(),
    )
