"""Health: the runbook's thresholds (read from alerts/thresholds.yml), each band's
edges, and the API and `redis-autoheal health` against the real test host: healthy (exit 0),
warning (exit 1), critical (exit 2), with the breaker and the last recoveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from redis_autoheal.cli import main
from redis_autoheal.config import Config
from redis_autoheal.probe import (
    ConnectivityResult,
    Layer,
    LayerResult,
    PerformanceResult,
    Reason,
    SystemdResult,
)
from redis_autoheal.thresholds import parse
from redis_autoheal.units import RUNNING
from remediator.app import create_app
from remediator.breaker import BreakerStore
from remediator.health import Band, Status, Thresholds, judge, recent_recoveries
from remediator.keys import DISPATCHER
from testhost.host import TestHost
from tests.remediator.configs import OPERATOR, TOKEN, write_config
from tests.remediator.notifications import alert, notification

THRESHOLDS = Path(__file__).parents[2] / "alerts" / "thresholds.yml"


def test_the_judgement_reads_alerts_thresholds_yml() -> None:
    # The runbook's bands below hold because they are the file's; change the file, and the
    # judgement follows.
    data = yaml.safe_load(THRESHOLDS.read_text(encoding="utf-8"))
    assert Thresholds.shipped() == Thresholds.of(parse(data))
    data["alerts"]["RedisPingLatencyHigh"] |= {"warning_ms": 1, "critical_ms": 2}
    data["alerts"]["RedisClientsNearMax"]["above_percent"] = 50
    changed = Thresholds.of(parse(data))
    assert changed.ping_latency_ms == Band(1, 2)
    found = results(latency_ms=1.5, info=info(clients=51), maxclients="100")
    assert {name: layer.status.label for name, layer in judge(found, changed).items()} == {
        "connectivity": "warning",
        "systemd": "healthy",
        "performance": "warning",
    }


def results(
    *,
    latency_ms: float | None = 0.5,
    state: str | None = "active",
    info: dict[str, str] | None = None,
    maxclients: str | None = "10000",
    systemd_reason: Reason | None = None,
) -> list[LayerResult]:
    pong = latency_ms is not None
    return [
        ConnectivityResult(
            layer=Layer.CONNECTIVITY,
            success=pong,
            duration_seconds=0.001,
            latency_seconds=None if latency_ms is None else latency_ms / 1000,
            reason=None if pong else Reason.REFUSED,
            message="" if pong else "refused",
        ),
        SystemdResult(
            layer=Layer.SYSTEMD,
            success=state in RUNNING,
            duration_seconds=0.01,
            unit="redis-server",
            ssh_up=state is not None,
            state=state,
            reason=systemd_reason,
        ),
        PerformanceResult(
            layer=Layer.PERFORMANCE,
            success=pong and info is not None,
            duration_seconds=0.001,
            info=info or {},
            maxclients=maxclients,
            reason=None if pong and info is not None else Reason.REFUSED,
        ),
    ]


def info(
    mb: float = 1, clients: int = 5, ops: int = 10, maxmemory: int = 0, bgsave: str = "ok"
) -> dict[str, str]:
    return {
        "used_memory": str(int(mb * 1024 * 1024)),
        "maxmemory": str(maxmemory),
        "connected_clients": str(clients),
        "instantaneous_ops_per_sec": str(ops),
        "rdb_last_bgsave_status": bgsave,
        "role": "master",
        "redis_version": "7.0.15",
    }


def statuses(found: list[LayerResult]) -> dict[str, str]:
    return {name: layer.status.label for name, layer in judge(found, Thresholds.shipped()).items()}


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({}, ("healthy", "healthy", "healthy")),
        ({"latency_ms": 4.99}, ("healthy", "healthy", "healthy")),
        ({"latency_ms": 5.0}, ("warning", "healthy", "healthy")),
        ({"latency_ms": 50.0}, ("warning", "healthy", "healthy")),
        ({"latency_ms": 50.01}, ("critical", "healthy", "healthy")),
        ({"latency_ms": None}, ("critical", "healthy", "critical")),
        ({"state": "reloading"}, ("healthy", "healthy", "healthy")),
        ({"state": "activating"}, ("healthy", "warning", "healthy")),
        ({"state": "deactivating"}, ("healthy", "warning", "healthy")),
        ({"state": "maintenance"}, ("healthy", "warning", "healthy")),
        ({"state": "inactive"}, ("healthy", "critical", "healthy")),
        ({"state": "failed"}, ("healthy", "critical", "healthy")),
        ({"state": None}, ("healthy", "critical", "healthy")),
        (
            {"state": None, "systemd_reason": Reason.SSH_NOT_CONFIGURED},
            ("healthy", "warning", "healthy"),
        ),
        ({"info": info(mb=3071.9)}, ("healthy", "healthy", "healthy")),
        ({"info": info(mb=3072)}, ("healthy", "healthy", "warning")),
        ({"info": info(mb=4000)}, ("healthy", "healthy", "warning")),
        ({"info": info(mb=4000.5)}, ("healthy", "healthy", "critical")),
        ({"info": info(clients=7999)}, ("healthy", "healthy", "healthy")),
        ({"info": info(clients=8000), "maxclients": "20000"}, ("healthy", "healthy", "warning")),
        ({"info": info(clients=9501), "maxclients": "20000"}, ("healthy", "healthy", "critical")),
        ({"info": info(clients=8001)}, ("healthy", "healthy", "warning")),  # 80.01 % too
        ({"info": info(clients=81), "maxclients": "100"}, ("healthy", "healthy", "warning")),
        ({"info": info(clients=80), "maxclients": "100"}, ("healthy", "healthy", "healthy")),
        ({"info": info(ops=9999)}, ("healthy", "healthy", "healthy")),
        ({"info": info(ops=10000)}, ("healthy", "healthy", "warning")),
        ({"info": info(ops=50001)}, ("healthy", "healthy", "critical")),
        ({"info": info(mb=76, maxmemory=100 * 1024 * 1024)}, ("healthy", "healthy", "warning")),
        ({"info": info(mb=75, maxmemory=100 * 1024 * 1024)}, ("healthy", "healthy", "healthy")),
        ({"info": info(bgsave="err")}, ("healthy", "healthy", "critical")),
        ({"info": None}, ("healthy", "healthy", "warning")),  # PONG, but INFO failed
    ],
)
def test_each_band_edge(kwargs: dict[str, Any], want: tuple[str, str, str]) -> None:
    kwargs.setdefault("info", info())
    found = statuses(results(**kwargs))
    assert (found["connectivity"], found["systemd"], found["performance"]) == want


def test_status_is_the_worst_and_the_exit_code_is_nagios() -> None:
    assert [int(s) for s in Status] == [0, 1, 2]
    assert max(Status.WARNING, Status.CRITICAL, Status.HEALTHY) is Status.CRITICAL


# --- against the real test host ---------------------------------------------------------------


def host_config(tmp_path: Path, host: TestHost, **sections: Any) -> Config:
    target = host.target("redis")
    target["ssh"].update(connect_timeout_seconds=1, command_timeout_seconds=3)
    data = {
        "targets": [target],
        "health_check": {"ping_timeout_seconds": 2},
        "auto_recovery": {"retry_delay_seconds": 0.2, "stable_seconds": 0.3},
        **sections,
    }
    return write_config(tmp_path, data)


def cli_health(config: Config, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[Any], str]:
    code = main(["health", "--config", str(config.source), "--json"])
    reports = json.loads(capsys.readouterr().out)
    text_code = main(["health", "--config", str(config.source), "--target", "redis"])
    assert text_code == code
    return code, reports, capsys.readouterr().out


def not_healthy(report: dict[str, Any]) -> set[str]:
    """The checks that are not healthy, but for PING latency (which a busy machine can lift)."""
    return {
        c["name"]
        for layer in report["layers"].values()
        for c in layer["checks"]
        if c["status"] != "healthy" and c["name"] != "ping_latency_ms"
    }


@pytest.mark.root
def test_cli_healthy_exits_0(
    test_host: TestHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = host_config(tmp_path, test_host)
    code, (report,), text = cli_health(config, capsys)
    assert not_healthy(report) == set()
    assert code == (0 if report["status"] == "healthy" else 1)
    assert report["layers"]["systemd"]["state"] == "active"
    assert report["layers"]["performance"]["redis_version"]
    assert report["circuit_breaker"]["open"] is False
    assert text.splitlines()[0] in (
        "REDIS HEALTHY: 1 target(s) healthy",
        "REDIS WARNING: redis warning",
    )
    assert "redis-server is active" in text


@pytest.mark.root
def test_cli_killed_redis_exits_2(
    test_host: TestHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = host_config(tmp_path, test_host)
    test_host.kill9()
    test_host.wait_state("failed", 10)
    code, (report,), text = cli_health(config, capsys)
    assert code == 2
    assert report["status"] == "critical"
    layers = report["layers"]
    assert (layers["connectivity"]["status"], layers["connectivity"]["reason"]) == (
        "critical",
        "refused",
    )
    assert (layers["systemd"]["status"], layers["systemd"]["state"]) == ("critical", "failed")
    assert text.startswith("REDIS CRITICAL: redis critical")


@pytest.mark.root
@pytest.mark.parametrize("test_host", [{"redis_config": ["maxclients 10"]}], indirect=True)
def test_cli_clients_near_maxclients_exits_1(
    test_host: TestHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = host_config(tmp_path, test_host)
    with contextlib.ExitStack() as stack:
        for _ in range(8):  # with the probe's own one: 9 of 10, above 80 %
            sock = stack.enter_context(socket.create_connection((test_host.address, 6379), 2))
            sock.sendall(b"PING\r\n")
            assert sock.recv(16) == b"+PONG\r\n"
        code, (report,), text = cli_health(config, capsys)
    assert code == 1, text
    assert not_healthy(report) == {"clients_percent_of_max"}
    assert report["layers"]["performance"]["maxclients"] == 10
    assert "clients_percent_of_max" in text


@pytest.mark.root
def test_cli_open_breaker_is_critical(
    test_host: TestHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = host_config(tmp_path, test_host, circuit_breaker={"max_recoveries": 1})
    store = BreakerStore(config.remediator.state_dir, config.circuit_breaker)
    store.check()
    store.record_recovery("redis")
    code, (report,), text = cli_health(config, capsys)
    assert code == 2
    assert report["circuit_breaker"]["open"] is True
    assert report["circuit_breaker"]["status"] == "critical"
    assert "OPEN since" in text


@pytest.mark.root
async def test_api_health_shows_the_last_recoveries(
    aiohttp_client: Any, test_host: TestHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = host_config(tmp_path, test_host)
    client: TestClient = await aiohttp_client(create_app(config))
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed", 10)
    body = notification(alert("redis"))
    response = await client.post(
        "/webhook", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 200
    async with asyncio.timeout(30):
        await client.app[DISPATCHER].wait_idle()
    response = await client.get("/api/services/redis/health", headers=OPERATOR)
    assert response.status == 200
    report = await response.json()
    assert not_healthy(report) == set()
    (recovery,) = report["recoveries"]
    assert (recovery["outcome"], recovery["recovery_level"], recovery["success"]) == (
        "recovered",
        "hard",
        True,
    )
    assert report["circuit_breaker"]["recent_recoveries"] == 1
    assert report["recovery_in_progress"] is False
    # The command line reads the same recoveries from the audit log.
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["health", "--config", str(config.source), "--json"])
    assert code in (0, 1)
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["recoveries"] == report["recoveries"]
    # All but what only a running remediator knows.
    assert set(report) - set(printed) == {"recovery_in_progress", "operation_in_progress"}


def test_the_last_recoveries_come_from_the_audit_logs_tail(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    path = config.audit.path
    path.parent.mkdir(parents=True)
    finished = {"event_type": "auto_recovery", "phase": "finished", "service": "redis"}
    lines = [
        json.dumps({**finished, "recovery_id": f"r{i}", "outcome": "recovered", "attempts": 1})
        for i in range(8)
    ]
    lines += [
        json.dumps({**finished, "service": "cache", "recovery_id": "other target"}),
        json.dumps({**finished, "phase": "verified", "recovery_id": "a step, not the end"}),
        json.dumps({**finished, "recovery_id": 7, "attempts": "2", "result": []}),  # odd types
        '{"event_type": "auto_recovery", "phase": "fin',  # a torn last line
    ]
    path.write_text("x" * 5_000_000 + "\n" + "\n".join(lines))  # past the 4 MiB tail read
    found, error = recent_recoveries(config.audit, "redis")
    assert error is None
    assert [r["recovery_id"] for r in found] == [None, "r7", "r6", "r5", "r4"]
    assert found[0]["attempts"] is None
    assert found[0]["success"] is None
    assert found[1]["attempts"] == 1
    assert recent_recoveries(config.audit, "nosuch") == ([], None)
    path.unlink()
    assert recent_recoveries(config.audit, "redis") == ([], None)
