"""Remediator replicas on a real 3-member etcd cluster (`coordination.backend: etcd`), each
receiving every notification, against the real test host: one recovery per outage (with an etcd
member down too), a breaker counted once, latched across restarts and reset from any replica, a
paused holder taken over and then refused, a replica cut off from etcd answering 503 while
the other heals, no quorum: 503 and nothing done, every replica's copy of the whole audit
trail, and one target lock and start budget for the manual operations and recoveries of all
replicas.

The host's own record of systemctl calls says what ran, whichever replica ran it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import pytest

from remediator.audit import read_events
from remediator.etcd.audit import copy_path
from remediator.keys import BREAKER, COORDINATION, METRICS
from tests.remediator.configs import ADMIN, OPERATOR, start_remediator
from tests.remediator.hostapp import AUTH, host_config, settle, verbs
from tests.remediator.notifications import alert, notification
from tests.support import HANG, free_port

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from aiohttp.test_utils import TestClient

    from redis_autoheal.config import Config
    from remediator.etcd.coordination import EtcdCoordination
    from testhost.host import TestHost
    from tests.etcd_cluster import EtcdCluster
    from tests.remediator.hostapp import MakeClient

pytestmark = pytest.mark.root

LEASE_TTL = 3


def replica_configs(
    tmp_path: Path, host: TestHost, etcd: EtcdCluster, n: int = 3, **sections: Any
) -> list[Config]:
    """N replicas' configs: each its own state and audit files, one etcd cluster."""
    coordination = {
        "backend": "etcd",
        "etcd": {"endpoints": etcd.endpoints, "lease_ttl_seconds": LEASE_TTL},
    }
    configs = []
    for i in range(n):
        (tmp_path / f"r{i}").mkdir()
        configs.append(
            host_config(tmp_path / f"r{i}", {"vm3": host}, coordination=coordination, **sections)
        )
    return configs


def now() -> str:
    """An alert's startsAt for an outage that starts now."""
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


async def post_all(
    clients: list[TestClient], *alerts: dict[str, Any], retry: bool = False
) -> list[list[str]]:
    """The same notification to every replica at once, as each Alertmanager peer sends it;
    with `retry`, sent again after a 503, as Alertmanager does."""

    async def post(client: TestClient) -> list[str]:
        async with asyncio.timeout(HANG):
            while True:
                response = await client.post("/webhook", json=notification(*alerts), headers=AUTH)
                if not (retry and response.status == 503):
                    break
                await asyncio.sleep(0.2)
        assert response.status == 200, await response.text()
        return [a["disposition"] for a in (await response.json())["alerts"]]

    return list(await asyncio.gather(*(post(c) for c in clients)))


async def settle_all(clients: list[TestClient]) -> None:
    for client in clients:
        await settle(client)


async def outage(host: TestHost) -> str:
    """Redis killed, its unit failed; the startsAt of the alert that says so."""
    host.kill9()
    await asyncio.to_thread(host.wait_state, "failed", 10)
    return now()


async def test_each_outage_is_recovered_once_by_one_of_three_replicas(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    configs = replica_configs(tmp_path, test_host, etcd, circuit_breaker={"max_recoveries": 100})
    clients = [await make_client(c) for c in configs]
    for client in clients:
        assert client.app[METRICS].registry.get_sample_value("autoheal_coordination_up") == 1
    rounds = 5
    for done in range(rounds):
        starts_at = await outage(test_host)
        body = alert("vm3", starts_at=starts_at)
        answers = await post_all(clients, body)
        assert sorted(answers) == [["duplicate"], ["duplicate"], ["recovery_started"]]
        await settle_all(clients)
        assert verbs(test_host) == ["restart"] * (done + 1)
        assert test_host.ping()
        # Alertmanager's repeats, from every peer: the outage was handled.
        assert await post_all(clients, body) == [["duplicate"]] * 3
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * rounds


async def test_with_one_etcd_member_down_recoveries_still_run_and_it_rejoins(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    clients = [await make_client(c) for c in replica_configs(tmp_path, test_host, etcd)]
    etcd.stop(0)  # the first endpoint of every replica
    answers = await post_all(clients, alert("vm3", starts_at=await outage(test_host)), retry=True)
    assert sorted(answers) == [["duplicate"], ["duplicate"], ["recovery_started"]]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"]
    etcd.start(0)  # rejoins: healthy, with a leader
    etcd.stop(1)  # and the cluster keeps its quorum with it
    answers = await post_all(clients, alert("vm3", starts_at=await outage(test_host)), retry=True)
    assert sorted(answers) == [["duplicate"], ["duplicate"], ["recovery_started"]]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 2
    assert test_host.ping()


async def test_the_breaker_is_counted_once_and_reset_from_any_replica(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    configs = replica_configs(
        tmp_path, test_host, etcd, circuit_breaker={"max_recoveries": 2, "window_seconds": 600}
    )
    clients = [await make_client(c) for c in configs]
    for _ in range(2):
        await post_all(clients, alert("vm3", starts_at=await outage(test_host)))
        await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 2
    state = clients[2].app[BREAKER].state("vm3")
    assert state.open
    assert len(state.recoveries) == 2  # counted by the one replica that recovered
    body = alert("vm3", starts_at=await outage(test_host))
    assert await post_all(clients, body) == [["suppressed_circuit_open"]] * 3
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 2

    for client in clients:  # every replica restarted: the latch holds
        await client.close()
    clients = [await make_client(c) for c in configs]
    assert await post_all(clients, body) == [["suppressed_circuit_open"]] * 3
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 2

    reset = await clients[1].post("/api/services/vm3/reset-circuit-breaker", headers=ADMIN)
    assert reset.status == 200, await reset.text()
    assert not clients[0].app[BREAKER].state("vm3").open
    answers = await post_all(clients, alert("vm3", starts_at=now()))
    assert sorted(answers) == [["duplicate"], ["duplicate"], ["recovery_started"]]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 3
    assert test_host.ping()


async def event(config: Config, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first audit event `wanted` in the replica's log, once it is there."""
    async with asyncio.timeout(HANG):
        while True:
            found = [e for e in read_events(config.audit) if wanted(e)]
            if found:
                return found[0]
            await asyncio.sleep(0.1)


def finished(e: dict[str, Any]) -> bool:
    return e["event_type"] == "auto_recovery" and e.get("phase") == "finished"


async def test_a_paused_holder_is_taken_over_and_then_refused_its_next_step(
    test_host: TestHost, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """The replica recovering Redis is SIGSTOPped between two attempts, past its lease: the
    other takes over and recovers. Redis fails again; the paused one, continued, decides its
    next step and is refused it (fenced): nothing it does reaches the host."""
    configs = replica_configs(
        tmp_path, test_host, etcd, n=2, auto_recovery={"retry_delay_seconds": 12}
    )
    ports = [free_port() for _ in configs]
    procs = [
        start_remediator(c, p, tmp_path / f"r{i}" / "out.log")
        for i, (c, p) in enumerate(zip(configs, ports, strict=True))
    ]
    try:
        test_host.start_fails()
        starts_at = await outage(test_host)
        async with aiohttp.ClientSession() as http:

            async def post(port: int) -> str:
                url = f"http://127.0.0.1:{port}/webhook"
                body = notification(alert("vm3", starts_at=starts_at))
                async with http.post(url, json=body, headers=AUTH) as r:
                    assert r.status == 200, await r.text()
                    return str((await r.json())["alerts"][0]["disposition"])

            answers = await asyncio.gather(*(post(p) for p in ports))
        assert sorted(answers) == ["duplicate", "recovery_started"]
        holder = answers.index("recovery_started")
        other = 1 - holder
        await event(configs[holder], lambda e: e.get("phase") == "verified")  # attempt 1 failed
        test_host.start_fails(False)
        os.kill(procs[holder].pid, signal.SIGSTOP)
        try:
            taken = await event(configs[other], lambda e: e.get("operation") == "resume")
            assert "taking over" in taken["reason"]
            ended = await event(configs[other], finished)
            assert ended["result"]["outcome"] == "recovered", ended
            assert verbs(test_host) == ["restart", "restart"]
            await outage(test_host)  # fails again: the paused replica's next attempt would act
        finally:
            os.kill(procs[holder].pid, signal.SIGCONT)
        stale = await event(configs[holder], finished)
        assert stale["result"]["outcome"] == "fenced", stale
        assert verbs(test_host) == ["restart", "restart"]  # nothing more reached the host
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(HANG)


async def coordination_up(client: TestClient, value: float) -> None:
    """Until the replica's `autoheal_coordination_up` is `value`."""
    registry = client.app[METRICS].registry
    async with asyncio.timeout(HANG):
        while registry.get_sample_value("autoheal_coordination_up") != value:  # noqa: ASYNC110 -- the metric is the event
            await asyncio.sleep(0.1)


async def test_without_quorum_every_replica_answers_503_and_nothing_acts(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    clients = [await make_client(c) for c in replica_configs(tmp_path, test_host, etcd, n=2)]
    etcd.stop(1, 2)

    await asyncio.gather(*(coordination_up(c, 0) for c in clients))
    body = notification(alert("vm3", starts_at=await outage(test_host)))
    for client in clients:
        response = await client.post("/webhook", json=body, headers=AUTH)
        assert response.status == 503, await response.text()
    await settle_all(clients)
    assert verbs(test_host) == []

    etcd.start(1, 2)  # quorum back: Alertmanager's retries are admitted, and act once
    await asyncio.gather(*(coordination_up(c, 1) for c in clients))
    answers = await post_all(clients, alert("vm3", starts_at=now()), retry=True)
    assert sorted(answers) == [["duplicate"], ["recovery_started"]]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"]


async def test_every_replica_keeps_the_whole_audit_trail_and_rebuilds_a_lost_copy(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    configs = replica_configs(tmp_path, test_host, etcd, n=2)
    clients = [await make_client(c) for c in configs]
    answers = await post_all(clients, alert("vm3", starts_at=await outage(test_host)))
    holder = configs[answers.index(["recovery_started"])]
    await settle_all(clients)
    copies = [copy_path(c.audit) for c in configs]

    async def same_copies() -> list[dict[str, Any]]:
        """Both copies, once they are identical and hold every event of both replicas' own
        logs (each written as before)."""
        texts: list[str] = []
        try:
            async with asyncio.timeout(HANG):
                while True:
                    count = sum(len(read_events(c.audit)) for c in configs)
                    texts = [p.read_text() if p.exists() else "" for p in copies]
                    if texts[0] == texts[1] and len(texts[0].splitlines()) == count:
                        return [json.loads(line) for line in texts[0].splitlines()]
                    await asyncio.sleep(0.1)
        except TimeoutError:
            pytest.fail(f"copies differ: {count} events; {texts}")

    events = await same_copies()
    revisions = [e["revision"] for e in events]
    assert revisions == sorted(revisions)
    replicas = {cast("EtcdCoordination", c.app[COORDINATION]).replica for c in clients}
    assert {e["replica"] for e in events} == replicas
    recovered = [e for e in events if finished(e)]
    assert [e["result"]["outcome"] for e in recovered] == ["recovered"]
    assert read_events(holder.audit)[-1]["timestamp"] == recovered[0]["timestamp"]

    copies[1].unlink()  # lost: rebuilt from etcd, identical to the other replica's
    assert await same_copies() == events


async def test_a_replica_cut_off_from_etcd_answers_503_while_the_others_heal(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """Replica 0 reaches etcd only through member 0 (its endpoints); member 0 goes away: that
    replica is on the minority side, the other reaches the majority."""
    (tmp_path / "cut").mkdir()
    cut = host_config(
        tmp_path / "cut",
        {"vm3": test_host},
        coordination={
            "backend": "etcd",
            "etcd": {"endpoints": etcd.endpoints[:1], "lease_ttl_seconds": LEASE_TTL},
        },
    )
    (majority,) = replica_configs(tmp_path, test_host, etcd, n=1)
    clients = [await make_client(cut), await make_client(majority)]
    etcd.stop(0)
    await coordination_up(clients[0], 0)
    body = notification(alert("vm3", starts_at=await outage(test_host)))
    response = await clients[0].post("/webhook", json=body, headers=AUTH)
    assert response.status == 503, await response.text()
    response = await clients[1].post("/webhook", json=body, headers=AUTH)
    assert response.status == 200, await response.text()
    assert [a["disposition"] for a in (await response.json())["alerts"]] == ["recovery_started"]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"]
    assert test_host.ping()


async def operate(client: TestClient, action: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/api/services/vm3/{action}", headers=OPERATOR)
    return response.status, await response.json()


async def test_a_manual_operation_is_busy_while_another_replica_recovers_the_target(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    configs = replica_configs(
        tmp_path, test_host, etcd, n=2, auto_recovery={"retry_delay_seconds": 2}
    )
    clients = [await make_client(c) for c in configs]
    test_host.start_fails()  # the recovery's attempts fail: it holds the target a while
    answers = await post_all(clients, alert("vm3", starts_at=await outage(test_host)))
    holder = answers.index(["recovery_started"])
    await event(configs[holder], lambda e: e.get("phase") == "verified")  # attempt 1 ran
    for client in (clients[1 - holder], clients[holder]):
        status, body = await operate(client, "restart")
        assert (status, body["reason"]) == (409, "busy"), body
        assert "a recovery is running" in body["detail"], body
    test_host.start_fails(False)
    await settle_all(clients)
    ran = [
        e
        for e in read_events(configs[holder].audit)
        if e["event_type"] == "ssh_command"
        and e["phase"] == "started"
        and e["operation"] in ("start", "stop", "restart", "reload")
    ]
    assert len(ran) == len(verbs(test_host)) >= 1
    assert set(verbs(test_host)) == {"restart"}  # the recovery's only
    other = read_events(configs[1 - holder].audit)
    assert [e for e in other if e["event_type"] == "ssh_command"] == []
    refused = [e for e in other if e["event_type"] == "service_operation"]
    assert [(e["phase"], e["reason"]) for e in refused] == [("refused", "busy")]
    assert test_host.ping()


async def test_the_start_budget_counts_the_starts_of_every_replica(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """As on one remediator (test_operations): 3 starts in 11 s, wherever they ran; the 4th
    is refused, and a recovery's start waits for a slot."""
    clients = [await make_client(c) for c in replica_configs(tmp_path, test_host, etcd, n=2)]
    for client in (clients[0], clients[1], clients[0]):
        status, body = await operate(client, "restart")
        assert status == 200, body
    status, body = await operate(clients[1], "start")
    assert (status, body["reason"]) == (429, "start_limit"), body
    response = await clients[0].post("/api/services/vm3/restart", headers=OPERATOR)
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 11
    status, body = await operate(clients[1], "reload")  # not a start: allowed
    assert status == 200, body
    assert verbs(test_host) == ["restart"] * 3 + ["reload"]

    answers = await post_all(clients, alert("vm3", starts_at=await outage(test_host)))
    assert sorted(answers) == [["duplicate"], ["recovery_started"]]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 3 + ["reload", "restart"]
    assert test_host.max_starts_in_window(10.0) == 3
    assert test_host.ping()
