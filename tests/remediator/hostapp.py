"""The remediator's app on the real test host, for the tests that post alerts to it: a config
with short timings, a client, a post as Alertmanager's, and what the host and the dispatcher
saw."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from redis_autoheal.config import Config
from remediator.keys import DISPATCHER
from remediator.recovery import Report
from testhost.host import TestHost
from tests.remediator.configs import TOKEN, write_config
from tests.remediator.notifications import notification

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MakeClient = Callable[..., Awaitable[TestClient]]


def host_config(tmp_path: Path, hosts: dict[str, TestHost], **sections: Any) -> Config:
    targets = []
    for name, host in hosts.items():
        target = host.target(name)
        target["ssh"].update(
            connect_timeout_seconds=1,
            command_timeout_seconds=3,
            control_timeout_seconds=20,
        )
        targets.append(target)
    data: dict[str, Any] = {
        "targets": targets,
        "health_check": {"ping_timeout_seconds": 1},
        "auto_recovery": {
            "retry_delay_seconds": 0.2,
            "stable_seconds": 0.3,
            "transition_timeout_seconds": 5,
        },
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return write_config(tmp_path, data)


async def post(client: TestClient, *alerts: dict[str, Any]) -> list[str]:
    response = await client.post("/webhook", json=notification(*alerts), headers=AUTH)
    assert response.status == 200, await response.text()
    return [a["disposition"] for a in (await response.json())["alerts"]]


async def settle(client: TestClient, limit: float = 60) -> None:
    async with asyncio.timeout(limit):
        await client.app[DISPATCHER].wait_idle()


def last_report(client: TestClient, target: str = "vm3") -> Report:
    return client.app[DISPATCHER].history(target)[-1]


def verbs(host: TestHost) -> list[str]:
    return [i.verb for i in host.invocations()]
