"""At start-up: recoveries and operations the last run left unfinished are closed and their
targets re-checked (remediator.resume, remediator.auditread.unfinished)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from remediator.app import create_app
from remediator.audit import encode, read_events
from remediator.auditread import unfinished
from remediator.events import AutoRecovery, Event, ServiceOperation, Webhook
from remediator.keys import DISPATCHER
from testhost.host import TestHost
from tests.remediator.configs import write_config
from tests.remediator.test_shutdown import host_config


def started(rid: str, service: str = "redis") -> Event:
    return AutoRecovery(
        service=service,
        operation="recover",
        success=None,
        phase="started",
        recovery_id=rid,
        alerts=[{"alertname": "RedisDown"}],
    )


def finished(rid: str, outcome: str, service: str = "redis") -> Event:
    return AutoRecovery(
        service=service,
        operation="recover",
        success=outcome == "recovered",
        phase="finished",
        recovery_id=rid,
        outcome=outcome,
    )


def operation(oid: str, phase: str, service: str = "redis") -> Event:
    return ServiceOperation(
        service=service,
        operation="restart",
        success=None if phase == "started" else True,
        phase=phase,
        operation_id=oid,
        outcome=None if phase == "started" else "success",
    )


def write_log(path: Path, *events: Event) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        for e in events:
            f.write(encode(e))


def test_unfinished_are_those_started_and_not_ended_or_ended_interrupted(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    write_log(
        config.audit.path,
        started("killed"),
        started("ok"),
        finished("ok", "recovered"),
        started("cut"),
        finished("cut", "interrupted"),
        started("resumed"),
        AutoRecovery(
            service="redis",
            operation="resume",
            success=None,
            resumed_ids=["resumed"],
        ),
        operation("op-killed", "started"),
        operation("op-done", "started"),
        operation("op-done", "finished"),
        finished("never-started", "interrupted"),
    )
    with config.audit.path.open("ab") as f:
        f.write(b'{"torn": ')  # a crashed writer's last line
    found = {u.id: u.ended for u in unfinished(config.audit)}
    assert found == {"killed": False, "cut": True, "op-killed": False}


def test_unfinished_looks_only_at_the_tail(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    filler = Webhook(service=None, operation="receive", success=True, receiver="x" * 900)
    write_log(config.audit.path, started("old"), *[filler] * 20, started("recent"))
    assert [u.id for u in unfinished(config.audit, tail_bytes=4096)] == ["recent"]
    assert [u.id for u in unfinished(config.audit)] == ["old", "recent"]


def test_unfinished_reads_the_file_before_a_just_rotated_live_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"audit": {"compress": "none"}})
    write_log(config.audit.path.with_name(config.audit.path.name + ".1"), started("before"))
    write_log(config.audit.path, started("after"))
    assert [u.id for u in unfinished(config.audit)] == ["before", "after"]


async def test_a_healthy_target_is_recorded_healthy_once_and_nothing_runs(
    aiohttp_client: Any,
    test_host: TestHost,
    tmp_path: Path,
) -> None:
    config = host_config(tmp_path, test_host)
    write_log(
        config.audit.path,
        started("killed", "vm3"),
        operation("op-killed", "started", "vm3"),
        started("cut", "vm3"),
        finished("cut", "interrupted", "vm3"),
    )
    client: TestClient = await aiohttp_client(create_app(config))
    async with asyncio.timeout(60):
        await client.app[DISPATCHER].wait_idle()
    await client.close()

    events = read_events(config.audit)
    closing = [e for e in events if e.get("found_at_start")]
    assert [(e["event_type"], e["phase"], e["result"]["outcome"]) for e in closing] == [
        ("auto_recovery", "finished", "interrupted"),
        ("service_operation", "finished", "interrupted"),
    ]
    assert "alerts" not in closing[0]
    (resume,) = [e for e in events if e.get("operation") == "resume"]
    assert resume["resumed_ids"] == ["killed", "op-killed", "cut"]
    new = resume["recovery_id"]
    (end,) = [
        e
        for e in events
        if (e["event_type"], e.get("recovery_id"), e.get("phase"))
        == ("auto_recovery", new, "finished")
    ]
    assert (end["outcome"], end["result"]["outcome"]) == ("healthy", "healthy")
    assert test_host.invocations() == []

    # The next start finds nothing left to do.
    before = len(read_events(config.audit))
    client = await aiohttp_client(create_app(config))
    async with asyncio.timeout(60):
        await client.app[DISPATCHER].wait_idle()
    await client.close()
    assert len(read_events(config.audit)) == before, json.dumps(read_events(config.audit)[before:])
