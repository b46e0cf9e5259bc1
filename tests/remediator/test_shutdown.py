"""Shutting down, and starting again: the real `python -m remediator` process, signalled.

SIGTERM stops admitting at once (503 with Retry-After; /healthz says "shutting down"), lets a
step already sent to the host finish and be verified, and ends every recovery with a terminal
audit event. After a SIGKILL the next start finds the recovery that never ended, closes it as
`interrupted`, re-checks the target and heals it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from redis_autoheal.config import Config
from remediator.app import create_app
from remediator.audit import read_events
from remediator.keys import DISPATCHER
from testhost.host import TestHost
from tests.remediator.configs import ADMIN, TOKEN, spawn_remediator, write_config
from tests.remediator.notifications import alert, notification
from tests.support import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

HANG_GUARD = 60.0  # seconds: only against a hang, never a timing expectation
POLL = 0.05


def host_config(tmp_path: Path, host: TestHost, **sections: Any) -> Config:
    target = host.target("vm3")
    target["ssh"].update(connect_timeout_seconds=2, command_timeout_seconds=5)
    data: dict[str, Any] = {
        "targets": [target],
        "health_check": {"ping_timeout_seconds": 2},
        "auto_recovery": {
            "retry_delay_seconds": 0.2,
            "stable_seconds": 0.5,
            "transition_timeout_seconds": 20,
        },
    }
    data.update(sections)
    return write_config(tmp_path, data)


def request(
    port: int, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to the remediator; (status, headers, body) whatever the status."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=HANG_GUARD) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def webhook(port: int, *alerts: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return request(port, "/webhook", notification(*alerts), {"Authorization": f"Bearer {TOKEN}"})


def wait_for(predicate: Any, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not seen within {HANG_GUARD}s"
        assert proc is None or proc.poll() is None, f"the remediator exited while waiting: {what}"
        time.sleep(POLL)


def wait_for_restart_running(host: TestHost, proc: subprocess.Popen[bytes]) -> None:
    """Until the host's own log shows a restart begun and not yet ended."""
    wait_for(
        lambda: any(i.end_ts is None for i in host.invocations(["restart"])),
        "the restart running on the host",
        proc,
    )


def recovery_mid_restart(
    host: TestHost, port: int, proc: subprocess.Popen[bytes], restart_seconds: float
) -> None:
    """Redis killed and its unit failed; on return the alert's recovery is running its restart,
    which takes `restart_seconds`."""
    host.slow_start(restart_seconds)
    host.kill9()
    host.wait_state("failed", 10)
    status, _, body = webhook(port, alert("vm3"))
    assert status == 200, body
    assert json.loads(body)["alerts"][0]["disposition"] == "recovery_started"
    wait_for_restart_running(host, proc)


@contextlib.contextmanager
def running(
    config: Config, tmp_path: Path, name: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The real remediator, up and answering /healthz; killed on the way out if still running."""
    port = free_port()
    proc = spawn_remediator(config, port, tmp_path / f"{name}.log")

    def up() -> bool:
        with contextlib.suppress(OSError):
            return request(port, "/healthz")[0] == 200
        return False

    try:
        wait_for(up, "the remediator answering /healthz", proc)
        yield proc, port
    finally:
        stop(proc)


def shutting_down(port: int) -> bool:
    """Whether /healthz says the process is draining."""
    status, _, body = request(port, "/healthz")
    return status == 503 and b"shutting down" in body


def events(config: Config, **match: Any) -> list[dict[str, Any]]:
    return [e for e in read_events(config.audit) if all(e.get(k) == v for k, v in match.items())]


def terminal_events(config: Config) -> dict[str, list[dict[str, Any]]]:
    """Every started recovery's id -> its terminal events (exactly one is right)."""
    started = events(config, event_type="auto_recovery", phase="started")
    finished = events(config, event_type="auto_recovery", phase="finished")
    return {
        s["recovery_id"]: [f for f in finished if f.get("recovery_id") == s["recovery_id"]]
        for s in started
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(HANG_GUARD)


pytestmark = pytest.mark.root


def test_sigterm_during_a_slow_restart_lets_it_finish_and_admits_nothing_more(
    test_host: TestHost, tmp_path: Path
) -> None:
    config = host_config(tmp_path, test_host)
    with running(config, tmp_path, "remediator") as (proc, port):
        # 8 s: the drain outlasts the checks below, even under load
        recovery_mid_restart(test_host, port, proc, 8)

        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: shutting_down(port), "/healthz saying shutting down", proc)
        refused, headers, body = webhook(port, alert("vm3"))
        assert refused == 503, body
        assert int(headers["Retry-After"]) >= 1
        refused, headers, body = request(port, "/api/services/vm3/restart", {}, ADMIN)
        assert refused == 503, body
        assert json.loads(body)["reason"] == "shutting_down"
        assert int(headers["Retry-After"]) >= 1
        assert proc.wait(HANG_GUARD) == 0, (tmp_path / "remediator.log").read_text()

    (restart,) = test_host.invocations(["restart"])
    assert restart.end_ts is not None
    assert restart.exit_code == 0
    assert test_host.ping()
    assert len(events(config, event_type="webhook")) == 1  # the refused one was not admitted
    assert events(config, event_type="service_operation") == []
    ((rid, finished),) = terminal_events(config).items()
    assert [f["outcome"] for f in finished] == ["recovered"], rid
    assert finished[0]["result"]["outcome"] == "recovered"


def ssh_never_used(tmp_path: Path) -> Config:
    """A config whose one target has an ssh section that nothing here reaches."""
    key, known_hosts = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("not used\n")
    key.chmod(0o600)
    known_hosts.write_text("")
    ssh = {"host": "127.0.0.1", "port": free_port(), "key_file": str(key)}
    return write_config(
        tmp_path,
        {"targets": [{"name": "redis", "ssh": {**ssh, "known_hosts": str(known_hosts)}}]},
    )


def test_a_recovery_admitted_while_its_webhook_write_is_in_flight_at_sigterm(
    tmp_path: Path,
) -> None:
    config = ssh_never_used(tmp_path)  # the recovery ends before it would act
    answers: list[tuple[int, dict[str, str], bytes]] = []
    lock_path = config.audit.path.with_name(config.audit.path.name + ".lock")
    with running(config, tmp_path, "remediator") as (proc, port):
        with lock_path.open("a") as lock:
            # Holding the audit log's lock keeps the webhook's audit write in flight.
            fcntl.flock(lock, fcntl.LOCK_EX)
            first = threading.Thread(target=lambda: answers.append(webhook(port, alert())))
            first.start()
            wait_for(lambda: waits_for_a_lock(proc.pid), "the webhook's audit write", proc)
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: shutting_down(port), "/healthz saying shutting down", proc)
            refused, headers, _ = webhook(port, alert())
            assert refused == 503
            assert int(headers["Retry-After"]) >= 1
            assert first.is_alive()  # still waiting for its audit write
        first.join(HANG_GUARD)
        assert proc.wait(HANG_GUARD) == 0, (tmp_path / "remediator.log").read_text()

    ((status, _, body),) = answers
    assert status == 200, body
    assert json.loads(body)["alerts"][0]["disposition"] == "recovery_started"
    assert len(events(config, event_type="webhook")) == 1
    ((rid, finished),) = terminal_events(config).items()
    assert [(f["outcome"], f["result"]["outcome"]) for f in finished] == [
        ("interrupted", "interrupted")
    ], rid
    assert events(config, event_type="ssh_command") == []  # nothing was run


def waits_for_a_lock(pid: int) -> bool:
    """Whether the process waits for a file lock: the kernel lists it with "->" in /proc/locks."""
    lines = Path("/proc/locks").read_text().splitlines()
    return any("->" in line and str(pid) in line.split() for line in lines)


def test_sigkill_mid_recovery_then_the_next_start_closes_it_and_heals(
    test_host: TestHost, tmp_path: Path
) -> None:
    config = host_config(tmp_path, test_host)
    with running(config, tmp_path, "first") as (proc, port):
        recovery_mid_restart(test_host, port, proc, 3)
        proc.kill()
        proc.wait(HANG_GUARD)
    (cut,) = terminal_events(config)
    assert terminal_events(config)[cut] == []  # SIGKILL: nothing could write an end

    # Whatever the cut restart left behind, the service is down when the remediator returns.
    test_host.slow_start(0)
    test_host.wait_state(["active", "failed", "inactive"], HANG_GUARD)
    if test_host.unit_state() == "active":
        test_host.kill9()
        test_host.wait_state("failed", 10)
    commands_before = len(test_host.invocations())

    with running(config, tmp_path, "second") as (proc, port):
        try:
            wait_for(lambda: len(terminal_events(config)) == 2, "a new recovery", proc)
            wait_for(lambda: all(terminal_events(config).values()), "every recovery ended", proc)
            wait_for(test_host.ping, "PONG", proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(HANG_GUARD)

    ends = terminal_events(config)
    assert [f["outcome"] for f in ends[cut]] == ["interrupted"]
    assert ends[cut][0]["result"]["outcome"] == "interrupted"
    ((new, finished),) = [(r, f) for r, f in ends.items() if r != cut]
    assert [f["outcome"] for f in finished] == ["recovered"], new
    (resume,) = events(config, event_type="auto_recovery", operation="resume")
    assert resume["resumed_ids"] == [cut]
    assert resume["recovery_id"] == new
    assert [i.verb for i in test_host.invocations()[commands_before:]] == ["restart"]


@pytest.mark.parametrize("kind", ["recovery", "operation"])
def test_a_step_still_running_after_the_grace_ends_interrupted(
    test_host: TestHost, tmp_path: Path, kind: str
) -> None:
    config = host_config(tmp_path, test_host, remediator={"shutdown_grace_seconds": 1})
    answers: list[tuple[int, dict[str, str], bytes]] = []
    with running(config, tmp_path, "remediator") as (proc, port):
        test_host.slow_start(8)
        if kind == "recovery":
            test_host.kill9()
            test_host.wait_state("failed", 10)
            assert webhook(port, alert("vm3"))[0] == 200
            caller = None
        else:
            caller = threading.Thread(
                target=lambda: answers.append(request(port, "/api/services/vm3/restart", {}, ADMIN))
            )
            caller.start()
        wait_for_restart_running(test_host, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(HANG_GUARD) == 0, (tmp_path / "remediator.log").read_text()
        if caller is not None:
            caller.join(HANG_GUARD)

    if kind == "recovery":
        ((rid, ends),) = terminal_events(config).items()
        assert [(e["outcome"], e["result"]["outcome"]) for e in ends] == [
            ("interrupted", "interrupted")
        ], rid
        assert "during attempt 1, restart" in ends[0]["reason"]
    else:
        ((status, _, body),) = answers
        assert status == 502, body
        assert json.loads(body)["detail"].startswith("interrupted")
        (began,) = events(config, event_type="service_operation", phase="started")
        ends = events(config, event_type="service_operation", phase="finished")
        assert [(e["operation_id"], e["result"]["outcome"]) for e in ends] == [
            (began["operation_id"], "interrupted")
        ]
    # Cut or not, the command sent goes on to its end on the host, as systemd's job would.
    test_host.wait_until(
        lambda: all(i.end_ts is not None for i in test_host.invocations(["restart"])),
        HANG_GUARD,
        "the restart ending on the host",
    )


def test_a_second_signal_cuts_the_grace_short(test_host: TestHost, tmp_path: Path) -> None:
    config = host_config(tmp_path, test_host)  # the default grace, 30 s, outlasts the restart
    with running(config, tmp_path, "remediator") as (proc, port):
        recovery_mid_restart(test_host, port, proc, 8)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: shutting_down(port), "/healthz saying shutting down", proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(HANG_GUARD) == 0, (tmp_path / "remediator.log").read_text()
        restarts = test_host.invocations(["restart"])
    assert [i.end_ts for i in restarts] == [None]  # it left before the restart ended
    ((rid, ends),) = terminal_events(config).items()
    assert [e["result"]["outcome"] for e in ends] == ["interrupted"], rid


async def test_an_admission_committed_after_the_dispatcher_closed_starts_nothing(
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    config = ssh_never_used(tmp_path)
    client = await aiohttp_client(create_app(config))
    dispatcher = client.app[DISPATCHER]
    await dispatcher.close()  # as the drain leaves it once its grace is over
    response = await client.post(
        "/webhook", json=notification(alert()), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 200  # its audit write made it: the decision stands as audited
    assert dispatcher.running("redis") is None
    assert dispatcher.in_progress() == set()
    assert events(config, event_type="auto_recovery") == []
