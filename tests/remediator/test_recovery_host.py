"""Do no harm, against the real test host: every attempt looks at the unit and PINGs before it
acts, so a Redis that came back meanwhile is not acted on again.

The host's own record of systemctl calls says what ran; the audit says how the recovery ended.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from remediator.audit import AuditWriter, read_events
from remediator.errors import AuditWriteError
from remediator.keys import BREAKER
from remediator.recovery import Level, Outcome
from tests.remediator.hostapp import host_config, last_report, post, settle, verbs
from tests.remediator.notifications import alert

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis_autoheal.config import Config
    from testhost.host import TestHost
    from tests.remediator.hostapp import MakeClient

pytestmark = pytest.mark.root


async def wait_event(config: Config, wanted: Callable[[dict[str, Any]], bool]) -> None:
    """Until an audit event `wanted` is on disk (bounded by a hang guard)."""
    async with asyncio.timeout(30):
        while not any(wanted(e) for e in read_events(config.audit)):  # noqa: ASYNC110 -- the audit file is the event
            await asyncio.sleep(0.05)


async def test_a_redis_that_thaws_during_the_retry_delay_is_not_restarted(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    """A stall: the reload cannot help a frozen Redis, then the stall ends by itself before the
    next attempt. That attempt finds it active and answering PING and restarts nothing."""
    config = host_config(tmp_path, {"vm3": test_host}, auto_recovery={"retry_delay_seconds": 5})
    client = await make_client(config)
    test_host.sigstop()
    assert await post(client, alert("vm3")) == ["recovery_started"]
    await wait_event(config, lambda e: e.get("phase") == "verified")  # the reload's check failed
    test_host.sigcont()  # during the 5 s retry delay
    await settle(client)
    report = last_report(client)
    assert verbs(test_host) == ["reload"]  # the host's own log: no restart
    assert report.outcome == Outcome.RECOVERED, report.reason
    assert [s.level for s in report.steps] == [Level.SOFT, None]
    assert test_host.ping()
    (finished,) = [
        e
        for e in read_events(config.audit)
        if e["event_type"] == "auto_recovery" and e.get("phase") == "finished"
    ]
    assert finished["outcome"] == "recovered"
    assert finished["attempts"] == 2


def stability_check_begun(events: list[dict[str, Any]]) -> bool:
    """A restart has finished and an is-active after it has answered."""
    commands = [(e["operation"], e["phase"]) for e in events if e["event_type"] == "ssh_command"]
    if ("restart", "finished") not in commands:
        return False
    after = commands[commands.index(("restart", "finished")) + 1 :]
    return ("is-active", "finished") in after


async def test_a_restart_that_worked_while_the_link_dropped_is_not_repeated(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    """The restart brought Redis back, then the host dropped off the network while the restart
    was checked for stability, so the check failed. Back on the network before the next
    attempt: that attempt finds Redis active and answering and restarts nothing."""
    config = host_config(
        tmp_path,
        {"vm3": test_host},
        auto_recovery={"retry_delay_seconds": 5, "stable_seconds": 3},
    )
    client = await make_client(config)
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed")
    assert await post(client, alert("vm3")) == ["recovery_started"]
    # The restart is verified by a PONG, then is-active, then 3 s of PINGs: cut the host off
    # once that is-active has answered, so it is the stability check that fails.
    async with asyncio.timeout(30):
        while not stability_check_begun(read_events(config.audit)):  # noqa: ASYNC110 -- the audit file is the event
            await asyncio.sleep(0.02)
    test_host.blackhole()  # during the 3 s of stability check
    try:
        await wait_event(config, lambda e: e.get("phase") == "verified")  # the check failed
    finally:
        test_host.unblackhole()  # during the 5 s retry delay
    await settle(client)
    report = last_report(client)
    assert verbs(test_host) == ["restart"]  # the host's own log: one restart
    assert report.outcome == Outcome.RECOVERED, report.reason
    assert "not stable" in report.steps[0].reason
    assert [s.level for s in report.steps] == [Level.HARD, None]
    assert test_host.ping()


async def test_a_step_whose_decision_cannot_be_audited_is_not_counted_and_its_end_is_owed(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit log fails just as the restart is decided (its start and the is-active reads
    are on disk): nothing runs and the breaker counts nothing, and the recovery's end is written
    ahead of the next event once the log takes writes again."""
    config = host_config(tmp_path, {"vm3": test_host})
    client = await make_client(config)
    write_chunks = AuditWriter._write_chunks
    refused: list[bytes] = []

    def refuse_the_first_decision(
        self: AuditWriter, chunks: list[bytes]
    ) -> tuple[int, AuditWriteError | None]:
        if not refused and any(b'"phase": "decided"' in c for c in chunks):
            refused.extend(chunks)
            return 0, AuditWriteError(f"cannot write {self.path}: No space left on device")
        return write_chunks(self, chunks)

    monkeypatch.setattr(AuditWriter, "_write_chunks", refuse_the_first_decision)
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed", 10)
    assert await post(client, alert("vm3")) == ["recovery_started"]
    await settle(client)
    first = last_report(client)
    assert first.outcome == Outcome.ABORTED, first.reason
    assert refused, "the injected failure was never reached"
    assert verbs(test_host) == []
    assert client.app[BREAKER].state("vm3").recoveries == ()
    # Alertmanager's next delivery: the aborted recovery forgot its alert, so it starts anew.
    assert await post(client, alert("vm3")) == ["recovery_started"]
    await settle(client)
    assert last_report(client).outcome == Outcome.RECOVERED
    assert verbs(test_host) == ["restart"]
    assert len(client.app[BREAKER].state("vm3").recoveries) == 1
    ends = {
        e["recovery_id"]: e["outcome"]
        for e in read_events(config.audit)
        if e["event_type"] == "auto_recovery" and e.get("phase") == "finished"
    }
    assert ends == {first.recovery_id: "aborted", last_report(client).recovery_id: "recovered"}


async def test_a_redis_restarted_behind_the_remediators_back_is_not_acted_on(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    """The remediator's Redis connection from an earlier look is closed by a restart it did not
    make; Redis answers again at once. A stale alert's recovery must see it answering (the first
    PING on the dead connection fails) and run nothing."""
    config = host_config(tmp_path, {"vm3": test_host})
    client = await make_client(config)
    assert await post(client, alert("vm3", fingerprint="s1")) == ["recovery_started"]
    await settle(client)
    assert last_report(client).outcome == Outcome.HEALTHY  # its PING left a connection open
    await asyncio.to_thread(test_host.restart)  # a person, on the host
    assert test_host.ping()
    ran = verbs(test_host)
    assert await post(client, alert("vm3", fingerprint="s2")) == ["recovery_started"]
    await settle(client)
    report = last_report(client)
    assert report.outcome == Outcome.HEALTHY, report.reason
    assert verbs(test_host) == ran  # the host's own log: nothing more ran
