"""Remediator replicas on a real 3-member etcd cluster (`coordination.backend: etcd`), each
receiving every notification, against the real test host: one recovery per outage (with an etcd
member down too, and from two real Alertmanagers whose gossip is blocked), a breaker counted
once, latched across restarts and reset from any replica, a paused holder taken over and then
refused, a replica cut off with its etcd member (a partition) or beside a member that is down
answering 503 while the other heals, no quorum: 503 and nothing done, every replica's copy of
the whole audit trail, and one target lock and start budget for the manual operations and
recoveries of all replicas.

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

from alerts.generator import deploy
from remediator.audit import read_events
from remediator.etcd.audit import copy_path
from remediator.keys import BREAKER, CONTROLS, COORDINATION, METRICS
from tests.alertmanager_cluster import AlertmanagerCluster
from tests.remediator.configs import ADMIN, OPERATOR, start_remediator
from tests.remediator.hostapp import AUTH, host_config, settle, verbs
from tests.remediator.notifications import alert, notification
from tests.support import HANG, REPO, free_port

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


FENCED = "/usr/local/sbin/redis-autoheal-fenced"  # where the test host installs it
FENCED_HOST = pytest.mark.parametrize("test_host", [{"fenced": True}], indirect=True)


def replica_configs(
    tmp_path: Path,
    host: TestHost,
    etcd: EtcdCluster,
    n: int = 3,
    *,
    fenced: bool = False,
    **sections: Any,
) -> list[Config]:
    """N replicas' configs: each its own state and audit files, one etcd cluster; `fenced`:
    their steps go through the host's fenced wrapper."""
    coordination = {
        "backend": "etcd",
        "etcd": {
            "endpoints": etcd.endpoints,
            "lease_ttl_seconds": LEASE_TTL,
            **({"fenced_command": FENCED} if fenced else {}),
        },
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
        # Alertmanager's repeats, from every peer, once Redis was healed: fresh looks (one
        # replica's, or one after another's) that act on nothing.
        repeats = await post_all(clients, body)
        assert ["recovery_started"] in repeats
        assert {tuple(r) for r in repeats} <= {("duplicate",), ("recovery_started",)}
        await settle_all(clients)
        assert verbs(test_host) == ["restart"] * (done + 1)
    assert verbs(test_host) == ["restart"] * rounds


def alertmanager_config(clients: list[TestClient], token_file: Path) -> dict[str, Any]:
    """alerts/alertmanager.yml's routing (the remediator's group_interval 1s, so each round's
    alert goes out within a second), its webhook to every replica, people's receivers inert."""
    shipped = deploy.load(REPO / "alerts" / "alertmanager.yml")
    urls = [str(c.make_url("/webhook")) for c in clients]
    site = deploy.AlertmanagerSite(
        remediator_url=urls[0],
        webhook_token_file=str(token_file),
        waits=deploy.Waits(
            root="30s", remediator="1s", grace="2m", page="10s", group_interval="1s"
        ),
        maintenance_windows=False,
    )
    return deploy.remediator_replicas(deploy.alertmanager(shipped, site), urls)


def redis_down(starts_at: str, ends_at: str | None = None) -> dict[str, Any]:
    """RedisDown on vm3 as Prometheus posts it to Alertmanager (resolved with `ends_at`)."""
    labels = {
        "alertname": "RedisDown",
        "instance": "vm3",
        "layer": "connectivity",
        "remediate": "true",
        "severity": "critical",
    }
    return {"labels": labels, "startsAt": starts_at} | ({"endsAt": ends_at} if ends_at else {})


def webhooks(client: TestClient) -> float:
    """The webhook requests the replica answered 200."""
    registry = client.app[METRICS].registry
    return registry.get_sample_value("autoheal_webhook_requests_total", {"code": "200"}) or 0


async def until(check: Callable[[], bool], what: str) -> None:
    """Until `check()` (run in a thread: it may ask an Alertmanager) holds."""
    try:
        async with asyncio.timeout(HANG):
            while not await asyncio.to_thread(check):  # noqa: ASYNC110 -- polled: no event to await
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"still waiting after {HANG:g}s for {what}")


async def answered(clients: list[TestClient], count: int, what: str) -> None:
    """Until every replica has answered `count` webhook requests."""
    await until(lambda: all(webhooks(c) >= count for c in clients), what)


async def test_alertmanagers_whose_gossip_is_blocked_both_send_and_one_replica_recovers(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """Two clustered Alertmanagers that cannot gossip each send every notification to each of
    three replicas: six deliveries per outage, one recovery. Then, gossiping, only one sends."""
    configs = replica_configs(tmp_path, test_host, etcd, circuit_breaker={"max_recoveries": 100})
    clients = [await make_client(c) for c in configs]
    am_config = alertmanager_config(clients, configs[0].remediator.webhook_token_file)

    def sent(ams: AlertmanagerCluster, i: int) -> float:
        return ams.metric(i, "alertmanager_notifications_total", integration="webhook")

    rounds = 5
    with AlertmanagerCluster(tmp_path / "blocked", am_config, gossip=False) as ams:
        alone = [{ams.cluster[0]}, {ams.cluster[1]}]  # each peer sees only itself
        assert [ams.peers(i) for i in (0, 1)] == alone
        for done in range(rounds):
            starts_at = await outage(test_host)
            await asyncio.to_thread(ams.post, redis_down(starts_at))
            await answered(clients, 4 * done + 2, "both Alertmanagers' notification")
            assert [sent(ams, i) for i in (0, 1)] == [3 * (2 * done + 1)] * 2
            await settle_all(clients)
            assert verbs(test_host) == ["restart"] * (done + 1)
            assert test_host.ping()
            await asyncio.to_thread(ams.post, redis_down(starts_at, ends_at=now()))
            await answered(clients, 4 * (done + 1), "both Alertmanagers' resolution")
        assert [webhooks(c) for c in clients] == [4 * rounds] * 3
        assert [ams.metric(i, "alertmanager_notifications_failed_total") for i in (0, 1)] == [0, 0]
        assert [ams.peers(i) for i in (0, 1)] == alone  # the block held throughout
    ended = [e for c in configs for e in read_events(c.audit) if finished(e)]
    assert [e["result"]["outcome"] for e in ended] == ["recovered"] * rounds

    # For contrast: gossiping, the second peer finds the first's notification in the shared
    # log once its peer timeout is over, and sends nothing.
    before = [webhooks(c) for c in clients]
    with AlertmanagerCluster(tmp_path / "gossip", am_config, gossip=True) as ams:
        await asyncio.to_thread(ams.post, redis_down(await outage(test_host)))
        await until(
            lambda: (
                all(webhooks(c) >= b + 1 for c, b in zip(clients, before, strict=True))
                and all(ams.metric(i, "alertmanager_nflog_queries_total") >= 3 for i in (0, 1))
            ),
            "one notification at every replica, and both peers past their notification log",
        )
        assert sorted(sent(ams, i) for i in (0, 1)) == [0, 3]
        await settle_all(clients)
        assert [webhooks(c) for c in clients] == [b + 1 for b in before]
    assert verbs(test_host) == ["restart"] * (rounds + 1)
    assert test_host.ping()


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


def steps(config: Config, recovery_id: str) -> list[dict[str, Any]]:
    """The recovery's verified steps, in its replica's audit log."""
    return [
        e
        for e in read_events(config.audit)
        if e.get("recovery_id") == recovery_id and e.get("phase") == "verified"
    ]


def commands(config: Config) -> list[dict[str, Any]]:
    """The state-changing commands the replica ran, as its audit log records their ends."""
    return [
        e
        for e in read_events(config.audit)
        if e["event_type"] == "ssh_command"
        and e.get("phase") == "finished"
        and e["operation"] != "is-active"
    ]


@FENCED_HOST
async def test_a_paused_holder_is_taken_over_and_then_refused_its_next_step(
    test_host: TestHost, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """The replica recovering Redis is SIGSTOPped between two attempts, past its lease: the
    other takes over, going on from the next attempt, and recovers. Redis fails again; the
    paused one, continued, decides its next step and is refused it (fenced): nothing it does
    reaches the host."""
    configs = replica_configs(
        tmp_path, test_host, etcd, n=2, fenced=True, auto_recovery={"retry_delay_seconds": 12}
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
            assert "after its attempt 1 (hard)" in taken["reason"], taken
            ended = await event(configs[other], finished)
            assert ended["result"]["outcome"] == "recovered", ended
            assert [e["attempt"] for e in steps(configs[other], taken["recovery_id"])] == [2]
            assert verbs(test_host) == ["restart", "restart"]
            ran = [e["command"] for e in commands(configs[holder]) + commands(configs[other])]
            fence = [int(c.split()[3]) for c in ran]  # sudo -n WRAPPER FENCE ACTION UNIT
            assert ran == [f"sudo -n {FENCED} {f} restart redis-server" for f in fence], ran
            assert fence[0] < fence[1]  # the takeover's claim is the newer
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


async def revoke_lease(client: TestClient) -> None:
    """The replica's etcd lease ends, as it does when the replica is paused past its TTL: its
    claims are gone; the replica, running on, has not noticed."""
    coordination = cast("EtcdCoordination", client.app[COORDINATION])
    await coordination.gateway.call("lease/revoke", {"ID": str(coordination.lease)})


@FENCED_HOST
async def test_a_step_already_on_its_way_at_the_takeover_is_refused_by_the_host_wrapper(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """The holder's own fence check passes, and so does the start budget's record in etcd
    (which checks the claim too); its step is then held on its way (as a pause there would)
    while its lease ends, the other replica takes over and restarts Redis through
    the host's fenced wrapper with the newer fence. The held step, arriving last with the older
    fence, is refused by the wrapper: nothing runs, the holder's recovery ends `fenced`, no
    further step, and both are in its audit log."""
    configs = replica_configs(tmp_path, test_host, etcd, n=2, fenced=True)
    holder, other = [await make_client(c) for c in configs]
    budget = holder.app[CONTROLS]["vm3"].start_budget
    acquire = budget.acquire
    checked, go = asyncio.Event(), asyncio.Event()

    async def held_on_its_way() -> float:
        waited = await acquire()  # the last check before the command leaves
        if not checked.is_set():
            checked.set()
            await go.wait()
        return waited

    budget.acquire = held_on_its_way
    body = notification(alert("vm3", starts_at=await outage(test_host)))
    response = await holder.post("/webhook", json=body, headers=AUTH)
    assert [a["disposition"] for a in (await response.json())["alerts"]] == ["recovery_started"]
    async with asyncio.timeout(HANG):
        await checked.wait()
    await revoke_lease(holder)
    taken = await event(configs[1], lambda e: e.get("operation") == "resume")
    ended = await event(configs[1], finished)
    assert ended["result"]["outcome"] == "recovered", ended
    assert verbs(test_host) == ["restart"]
    go.set()

    stale = await event(configs[0], finished)
    assert stale["result"]["outcome"] == "fenced", stale
    assert "refused by the host's fenced wrapper" in stale["reason"], stale
    refused, done = commands(configs[0]), commands(configs[1])
    assert [e["result"]["exit_code"] for e in refused] == [77], refused
    assert "refused: fence" in refused[0]["stderr"]
    assert [e["result"]["exit_code"] for e in done] == [0], done
    held_fence, new_fence = (int(e["command"].split()[3]) for e in (refused[0], done[0]))
    assert held_fence < new_fence
    assert [e["attempt"] for e in steps(configs[1], taken["recovery_id"])] == [2]
    await settle_all([holder, other])
    assert verbs(test_host) == ["restart"]  # the refused step ran nothing, and none followed it
    assert [e.get("attempt") for e in refused] == [1]
    assert test_host.ping()


async def first_start_failed(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> tuple[list[Config], TestClient, TestClient, dict[str, Any]]:
    """Two replicas; Redis stopped and unable to start; the holder's recovery has verified its
    attempt 1: (configs, holder, other, that `verified` event)."""
    configs = replica_configs(
        tmp_path, test_host, etcd, n=2, auto_recovery={"retry_delay_seconds": 3}
    )
    holder, other = [await make_client(c) for c in configs]
    test_host.start_fails()
    await asyncio.to_thread(test_host.stop)
    body = notification(alert("vm3", starts_at=now()))
    response = await holder.post("/webhook", json=body, headers=AUTH)
    assert [a["disposition"] for a in (await response.json())["alerts"]] == ["recovery_started"]
    first = await event(configs[0], lambda e: e.get("phase") == "verified")
    return configs, holder, other, first


async def test_a_takeover_goes_on_from_the_next_attempt_and_never_past_the_last(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """Redis stopped and unable to start: the holder's attempt 1 (start) fails, and its lease
    ends. The replica taking over goes on from attempt 2 (restart, the runbook's next level)
    to attempt 3 and ends exhausted: three commands in all, across both; the holder, going on,
    is fenced before its attempt 2 acts."""
    configs, holder, other, first = await first_start_failed(test_host, make_client, etcd, tmp_path)
    assert (first["operation"], first["attempt"], first["result"]["success"]) == (
        "start",
        1,
        False,
    )
    await revoke_lease(holder)

    taken = await event(configs[1], lambda e: e.get("operation") == "resume")
    assert "after its attempt 1 (standard): going on from the next" in taken["reason"], taken
    ended = await event(configs[1], finished)
    assert ended["result"]["outcome"] == "exhausted", ended
    went_on = steps(configs[1], taken["recovery_id"])
    assert [(e["attempt"], e["operation"]) for e in went_on] == [(2, "restart"), (3, "restart")]
    stale = await event(configs[0], finished)
    assert stale["result"]["outcome"] == "fenced", stale
    await settle_all([holder, other])
    assert verbs(test_host) == ["start", "restart", "restart"]  # max_attempts, across both


async def test_a_recovery_cut_by_its_replicas_shutdown_is_taken_over(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """A rolling restart: Redis stopped and unable to start, the holder's attempt 1 (start)
    fails, and while it waits to retry the holder shuts down. Its recovery ends `interrupted`
    there; its claim goes with its lease, and the other replica takes the recovery over from
    attempt 2 and heals Redis, which can start again by then."""
    configs, holder, other, first = await first_start_failed(test_host, make_client, etcd, tmp_path)
    assert (first["operation"], first["result"]["success"]) == ("start", False)
    test_host.start_fails(False)
    await holder.close()
    cut = await event(configs[0], finished)
    assert cut["result"]["outcome"] == "interrupted", cut

    taken = await event(configs[1], lambda e: e.get("operation") == "resume")
    assert "after its attempt 1 (standard): going on from the next" in taken["reason"], taken
    ended = await event(configs[1], finished)
    assert ended["result"]["outcome"] == "recovered", ended
    await settle(other)
    assert verbs(test_host) == ["start", "restart"]
    assert test_host.ping()


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


def beside_member_0(tmp_path: Path, host: TestHost, etcd: EtcdCluster) -> Config:
    """A replica whose only endpoint is etcd member 0."""
    (tmp_path / "beside").mkdir()
    return host_config(
        tmp_path / "beside",
        {"vm3": host},
        coordination={
            "backend": "etcd",
            "etcd": {"endpoints": etcd.endpoints[:1], "lease_ttl_seconds": LEASE_TTL},
        },
    )


@pytest.mark.parametrize("etcd", [{"apart": True}], indirect=True, ids=["apart"])
async def test_a_replica_cut_off_with_its_etcd_member_answers_503_while_the_majority_heals(
    test_host: TestHost, etcd: EtcdCluster, make_client: MakeClient, tmp_path: Path
) -> None:
    """A partition: member 0 keeps running and answering, cut off from the other two members.
    Replica 0 reaches etcd only through member 0: with it, the minority. The other replica
    lists every member (member 0 first) and reaches the majority."""
    cut = beside_member_0(tmp_path, test_host, etcd)
    (majority,) = replica_configs(tmp_path, test_host, etcd, n=1)
    clients = [await make_client(cut), await make_client(majority)]
    await asyncio.gather(*(coordination_up(c, 1) for c in clients))
    etcd.cut()
    assert etcd.health(0) == "false"  # it answers, without a leader
    await coordination_up(clients[0], 0)

    body = alert("vm3", starts_at=await outage(test_host))
    response = await clients[0].post("/webhook", json=notification(body), headers=AUTH)
    assert response.status == 503, await response.text()
    assert await post_all(clients[1:], body, retry=True) == [["recovery_started"]]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"]
    assert test_host.ping()
    assert read_events(cut.audit) == []  # the cut replica did and recorded nothing
    assert etcd.health(0) == "false"  # still cut off, all along

    await asyncio.to_thread(etcd.rejoin)  # member 0 rejoins the majority, its replica with it
    assert etcd.health(0) == "true"
    await asyncio.gather(*(coordination_up(c, 1) for c in clients))
    await post_all(clients[:1], body, retry=True)  # Alertmanager's retry: admitted, nothing to do
    await settle_all(clients)
    assert verbs(test_host) == ["restart"]


async def test_a_replica_whose_etcd_member_is_down_answers_503_while_the_others_heal(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """Member 0 stopped: replica 0's only endpoint refuses connections (where a partitioned
    member answers without quorum, or not in time); the other replica fails over to the rest."""
    cut = beside_member_0(tmp_path, test_host, etcd)
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
