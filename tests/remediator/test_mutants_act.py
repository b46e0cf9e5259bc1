"""Tests added for remediator/act.py's surviving mutants (scripts/mutation.sh): every command a
run sends to the host is audited under the run it belongs to, against the real test host.

Who acted, from where and for which run (operation_id; recovery_id and attempt) is what an
auditor reads on each `ssh_command` event, for the action and for each look (is-active) around it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from remediator.app import create_app
from remediator.audit import read_events
from remediator.keys import CONFIG
from tests.remediator.apidoc import call
from tests.remediator.configs import ADMIN, OPERATOR, write_config
from tests.remediator.hostapp import host_config, post, settle
from tests.remediator.notifications import alert
from tests.remediator.test_operations import client

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aiohttp.test_utils import TestClient

    from testhost.host import TestHost
    from tests.remediator.hostapp import MakeClient

pytestmark = pytest.mark.root
__all__ = ["client"]  # the fixture, shared with test_operations


def between(
    events: list[dict[str, Any]], first: dict[str, Any], last: dict[str, Any]
) -> list[dict[str, Any]]:
    """The `ssh_command` events of the log from `first` to `last`."""
    span = events[events.index(first) : events.index(last)]
    return [e for e in span if e["event_type"] == "ssh_command"]


async def test_each_command_of_an_operation_is_audited_under_who_asked_and_its_id(
    client: TestClient, test_host: TestHost
) -> None:
    status, body = await call(client, "POST", "stop", ADMIN)
    assert status == 200, body
    status, body = await call(client, "POST", "start", OPERATOR)
    assert status == 200, body
    events = read_events(client.app[CONFIG].audit)
    ops = [e for e in events if e["event_type"] == "service_operation"]
    assert [(e["operation"], e["phase"]) for e in ops] == [
        ("stop", "started"),
        ("stop", "finished"),
        ("start", "started"),
        ("start", "finished"),
    ]
    for started, finished in zip(ops[::2], ops[1::2], strict=True):
        commands = between(events, started, finished)
        # The look before, the command, the looks after: each phase of each.
        assert {e["operation"] for e in commands} >= {"is-active", started["operation"]}
        for e in commands:
            assert e["user"] == finished["user"], e
            assert e["source_ip"] == "127.0.0.1", e
            assert e["operation_id"] == started["operation_id"], e
        assert finished["result"]["exit_code"] == 0
        assert finished["result"]["success"] is True, finished
    stopped, started_again = ops[1], ops[3]
    # The stop opened the breaker, in the admin's name and the stop's.
    (opened,) = [e for e in events if e["event_type"] == "circuit_breaker"]
    assert {k: v for k, v in opened.items() if k != "timestamp"} == {
        "event_type": "circuit_breaker",
        "service": "redis",
        "operation": "open",
        "user": stopped["user"],
        "source_ip": "127.0.0.1",
        "result": {"success": True, "duration_seconds": None, "exit_code": None},
        "security": {"command_validated": True, "risk_level": "none", "ssh_key_used": False},
        "operation_id": stopped["operation_id"],
        "reason": "manual stop by user-123: auto-recovery is off until an admin resets it",
    }
    assert stopped["unit_state_after"] == "inactive"
    assert started_again["unit_state_after"] == "active"
    assert test_host.ping()


async def test_each_command_of_a_recovery_is_audited_under_its_id_and_attempt(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    config = host_config(tmp_path, {"vm3": test_host})
    client = await make_client(config)
    test_host.kill9()  # failed: a restart, checked for stability (is-active once more)
    await asyncio.to_thread(test_host.wait_state, "failed")
    assert await post(client, alert("vm3")) == ["recovery_started"]
    await settle(client)
    assert test_host.ping()
    events = read_events(config.audit)
    recovery = [e for e in events if e["event_type"] == "auto_recovery"]
    recovery_id = recovery[0]["recovery_id"]
    commands = [e for e in events if e["event_type"] == "ssh_command"]
    # The restart, its settled state, and the state once stable for stable_seconds.
    assert [e["operation"] for e in commands if e["phase"] == "finished"][-3:] == [
        "restart",
        "is-active",
        "is-active",
    ]
    for e in commands:
        assert e["user"] == recovery[0]["user"], e
        assert e["source_ip"] == "127.0.0.1", e  # the webhook's caller
        assert e["recovery_id"] == recovery_id, e
        assert e["attempt"] == 1, e
    assert recovery[-1]["outcome"] == "recovered"


ROGUE_PORT = 6380


@pytest.fixture
def rogue_redis(test_host: TestHost) -> Iterator[int]:
    """A redis-server on the host that its unit does not manage (a stop leaves it answering)."""
    argv = ["redis-server", "--port", str(ROGUE_PORT), "--bind", "0.0.0.0", "--save", ""]
    argv += ["--protected-mode", "no", "--daemonize", "yes"]
    if test_host.password_file:
        argv += ["--requirepass", test_host.password_file.read_text().strip()]
    started = test_host.run(argv)
    assert started.returncode == 0, started.stderr
    yield ROGUE_PORT
    test_host.run(["pkill", "-f", f"redis-server .*:{ROGUE_PORT}"])


async def test_a_stop_after_which_redis_still_answers_is_a_failure(
    aiohttp_client: Any, test_host: TestHost, rogue_redis: int, tmp_path: Path
) -> None:
    """The target's Redis is not the unit's: the unit stops, PING still answers, and the stop
    says so (502), in its answer and its audit event."""
    target = test_host.target("redis")
    target["redis"]["port"] = rogue_redis
    config = write_config(
        tmp_path, {"targets": [target], "health_check": {"ping_timeout_seconds": 1}}
    )
    client = await aiohttp_client(create_app(config))
    status, body = await call(client, "POST", "stop", ADMIN)
    assert status == 502, body
    assert body["success"] is False
    assert body["exit_code"] == 0
    assert body["unit_state_after"] == "inactive"
    assert body["detail"] == "Redis still answers PING 1s after the stop"
    assert test_host.unit_state() == "inactive"
    (finished,) = [
        e
        for e in read_events(config.audit)
        if e["event_type"] == "service_operation" and e["phase"] == "finished"
    ]
    assert finished["result"]["success"] is False
    assert (finished["detail"], finished["outcome"]) == (body["detail"], "failure")
