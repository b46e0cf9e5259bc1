"""TargetControl: the whitelist checked once more before anything; the start budget."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from redis_autoheal.commands import Action, ServiceControl, Unit
from redis_autoheal.config import Audit, SshEndpoint, Target
from redis_autoheal.errors import CommandRejected
from redis_autoheal.ssh import SshHost
from remediator.audit import AuditWriter, read_events
from remediator.control import StartBudget, TargetControl
from remediator.metrics import Metrics


async def test_a_tampered_command_is_refused_counted_and_audited(tmp_path: Path) -> None:
    audit = Audit(path=tmp_path / "audit.log")
    writer = AuditWriter(audit)
    writer.open()
    metrics = Metrics(["redis"], lambda _: False)
    endpoint = SshEndpoint(host="127.0.0.1", port=1, connect_timeout_seconds=0.2)
    control = TargetControl(
        Target(name="redis", ssh=endpoint),
        SshHost(endpoint),
        writer,
        metrics,
        dry_run=False,
        ping_timeout_seconds=0.1,
    )
    command = ServiceControl(Action.RESTART, Unit("redis-server"))
    object.__setattr__(command.unit, "name", "redis-server; rm -rf /")
    with pytest.raises(CommandRejected):
        await control.run(command)
    value = metrics.registry.get_sample_value(
        "autoheal_security_violations_total", {"reason": "command_rejected"}
    )
    assert value == 1
    (event,) = read_events(audit)
    assert event["event_type"] == "security_violation"
    assert event["security"]["command_validated"] is False
    await control.close()
    await writer.close()


async def test_the_start_budget_waits_for_a_free_slot() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    budget = StartBudget(burst=3, interval=11.0, clock=lambda: now[0], sleep=sleep)
    waits, starts = [], []
    for _ in range(7):
        waits.append(await budget.acquire())
        starts.append(now[0])
        now[0] += 0.5
    assert waits[:3] == [0, 0, 0]
    assert waits[3] == pytest.approx(9.5)  # until 11 s after the first
    for first in starts:  # never more than 3 in any 11 s
        assert sum(1 for t in starts if first <= t < first + 11.0) <= 3
