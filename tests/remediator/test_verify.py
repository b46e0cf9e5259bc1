"""remediator.verify on the real test host: what each helper finds, as a typed finding, through
the target's one prober and its audited `is-active`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from redis_autoheal.probe import Reason
from redis_autoheal.sshpool import SshPool
from remediator.audit import AuditWriter, read_events
from remediator.control import TargetControl
from remediator.metrics import Metrics
from remediator.verify import (
    UnitReading,
    pong_within,
    settled_state,
    silent_within,
    stable_for,
    unit_state,
)
from tests.remediator.configs import write_config
from tests.remediator.controls import target_control

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from redis_autoheal.config import Config
    from testhost import TestHost

pytestmark = pytest.mark.root  # every test here uses a test host


@contextlib.asynccontextmanager
async def control_of(test_host: TestHost, tmp_path: Path) -> AsyncIterator[TargetControl]:
    config: Config = write_config(
        tmp_path,
        {"targets": [test_host.target("vm3")], "health_check": {"ping_timeout_seconds": 1}},
    )
    (target,) = config.targets
    assert target.ssh is not None
    pool = SshPool()
    ssh = pool.host(target.ssh)
    writer = AuditWriter(config.audit)
    writer.open()
    control = target_control(
        target, ssh, writer, Metrics([target.name], lambda _: False), config.health_check
    )
    try:
        yield control
    finally:
        await control.prober.close()
        await pool.close()
        await writer.close()


async def test_a_running_redis(test_host: TestHost, tmp_path: Path) -> None:
    async with control_of(test_host, tmp_path) as control:
        reading = await unit_state(control)
        pong = await pong_within(control, 1.0)
        silence = await silent_within(control, 0.3)
        kept = await stable_for(control, 1.2)
    assert reading == UnitReading("active")
    assert (reading.running, reading.stopped, reading.in_transition) == (True, False, False)
    assert (pong.ok, pong.reason, pong.detail) == (True, None, "")
    assert (silence.ok, silence.reason) == (False, None)
    assert silence.detail == "Redis still answers PING 0.3s after the stop"
    assert (kept.ok, kept.detail) == (True, "")
    assert kept.seconds >= 1.2
    # The state was read with an audited command, like any other.
    commands = [e["command"] for e in read_events(control.audit.settings) if "command" in e]
    assert commands == ["systemctl is-active redis-server"] * 2


async def test_a_stopped_redis(test_host: TestHost, tmp_path: Path) -> None:
    test_host.stop()
    async with control_of(test_host, tmp_path) as control:
        reading = await settled_state(control, 5.0)
        pong = await pong_within(control, 0.5)
        silence = await silent_within(control, 1.0)
    assert reading == UnitReading("inactive")
    assert reading.stopped
    assert (pong.ok, pong.reason) == (False, Reason.REFUSED)
    assert pong.detail.startswith("no PONG within 0.5s (refused: ")
    assert pong.seconds >= 0.5
    assert (silence.ok, silence.reason, silence.detail) == (True, Reason.REFUSED, "")


async def test_a_hung_redis(test_host: TestHost, tmp_path: Path) -> None:
    async with control_of(test_host, tmp_path) as control:
        assert (await pong_within(control, 1.0)).ok  # a connection is open
        test_host.sigstop()
        try:
            pong = await pong_within(control, 0.5)
            kept = await stable_for(control, 3.0)
        finally:
            test_host.sigcont()
        again = await pong_within(control, 5.0)
    # A PING that timed out is told by its reason; the detail adds nothing to the first words.
    assert (pong.ok, pong.reason, pong.detail) == (False, Reason.TIMEOUT, "no PONG within 0.5s")
    assert (kept.ok, kept.reason) == (False, Reason.TIMEOUT)
    assert kept.detail == "timeout: no answer within 1s"
    assert again.ok
