"""The audit log failing, as users see it: lock, rotation and compression failures.

Whatever fails, the webhook answers 503 with nothing done, the error is counted and logged with
the file at fault, every event written before is still there once (where `audit summary` reads),
and once the fault is gone Alertmanager's retry is admitted and acts. The last test shows it on
the real test host: a lock failure must not leave the target busy for ever.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from remediator.app import create_app
from remediator.audit import AuditWriter, audit_event, read_events
from remediator.auditread import iter_events
from remediator.errors import AuditWriteError
from remediator.keys import DISPATCHER, METRICS
from remediator.recovery import Outcome
from tests.remediator.conftest import OPERATOR, TOKEN, alert, notification, write_config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from aiohttp.test_utils import TestClient

    from redis_autoheal.config import Config
    from testhost.host import TestHost

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HANG = 60  # only guards a hang: a write that never settles is the defect tested here


def lock_path(config: Config) -> Path:
    return config.audit.path.with_name(config.audit.path.name + ".lock")


def fail_flock_once(monkeypatch: pytest.MonkeyPatch, lock: Path) -> list[int]:
    """The next flock of the audit's lock file fails with ENOLCK, as on NFS without a lock
    daemon (which cannot run here); every other lock, and every later one, is the real call.
    Returns the list the failed call's descriptor is put in."""
    real = fcntl.flock
    failed: list[int] = []

    def flock(fd: int, operation: int) -> None:
        if not failed and Path(f"/proc/self/fd/{fd}").readlink() == lock:
            failed.append(fd)
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    return failed


async def test_a_lock_failure_fails_its_batch_and_the_next_write_goes_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, {})
    errors: list[int] = []
    writer = AuditWriter(config.audit, on_error=lambda: errors.append(1))
    writer.open()
    failed = fail_flock_once(monkeypatch, lock_path(config))

    def one(n: int) -> dict[str, Any]:
        return audit_event("webhook", service=None, operation="receive", success=True, seq=n)

    async with asyncio.timeout(HANG):
        # Two writers waiting on the same batch: each learns it failed.
        results = await asyncio.gather(
            writer.write(one(1)), writer.write(one(2)), return_exceptions=True
        )
        assert failed
        for result in results:
            assert isinstance(result, AuditWriteError)
            assert str(result) == f"cannot lock {lock_path(config)}: No locks available"
        assert errors == [1, 1]
        await writer.write(one(3))  # the flusher is still there for the next batch
        await writer.close()
    assert [e["seq"] for e in read_events(config.audit)] == [3]


async def test_an_unforeseen_error_fails_its_write_and_the_next_one_goes_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an OSError (here the compression of a rotation running out of memory): the write
    fails as any other, and the next one finishes the rotation; no event lost or doubled."""
    config = write_config(tmp_path, {"audit": {"max_bytes": 1024, "backup_count": 2}})
    writer = AuditWriter(config.audit)
    writer.open()
    real = shutil.copyfileobj
    failed: list[int] = []

    def copy_out_of_memory(*args: Any, **kwargs: Any) -> None:
        if not failed:
            failed.append(1)
            raise MemoryError
        real(*args, **kwargs)

    monkeypatch.setattr(shutil, "copyfileobj", copy_out_of_memory)

    def one(n: int) -> dict[str, Any]:
        return audit_event("webhook", service=None, operation="receive", success=True, seq=n)

    written: list[int] = []
    error = None
    async with asyncio.timeout(HANG):
        for n in range(20):  # until a rotation is due
            try:
                await writer.write({**one(n), "pad": "x" * 300})
            except AuditWriteError as e:
                error = e
                break
            written.append(n)
        assert str(error) == f"cannot write {config.audit.path}: MemoryError()"
        await writer.write(one(99))
        await writer.close()
    assert [e["seq"] for e in read_events(config.audit)] == [*written, 99]


async def test_a_write_after_the_executor_shut_down_fails_instead_of_waiting(
    tmp_path: Path,
) -> None:
    """At shutdown no thread is left to write with: the writer is told, not left waiting."""
    config = write_config(tmp_path, {})
    writer = AuditWriter(config.audit)
    writer.open()
    await asyncio.get_running_loop().shutdown_default_executor()
    async with asyncio.timeout(HANG):
        with pytest.raises(AuditWriteError, match=r"cannot write .*shutdown"):
            await writer.write(audit_event("webhook", service=None, operation="x", success=True))
        await writer.close()


def _lock_is_a_directory(config: Config, _: pytest.MonkeyPatch) -> Callable[[], None]:
    lock = lock_path(config)
    lock.unlink()
    lock.mkdir()
    return lock.rmdir


def _flock_fails(config: Config, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    fail_flock_once(monkeypatch, lock_path(config))
    return lambda: None  # once only: the retry finds the lock working again


def _oldest_backup_cannot_go(config: Config, _: pytest.MonkeyPatch) -> Callable[[], None]:
    backup = config.audit.path.with_name(config.audit.path.name + ".1.gz")
    (backup / "in-the-way").mkdir(parents=True)  # a directory cannot be unlinked as a file
    return lambda: shutil.rmtree(backup)


def _compressed_copy_cannot_be_made(config: Config, _: pytest.MonkeyPatch) -> Callable[[], None]:
    tmp = config.audit.path.with_name(config.audit.path.name + ".1.gz.tmp")
    (tmp / "in-the-way").mkdir(parents=True)
    return lambda: shutil.rmtree(tmp)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (_lock_is_a_directory, "cannot open {dir}/audit.log.lock: Is a directory"),
        (_flock_fails, "cannot lock {dir}/audit.log.lock: No locks available"),
        (
            _oldest_backup_cannot_go,
            "cannot rotate {dir}/audit.log: {dir}/audit.log.1.gz: Is a directory",
        ),
        (
            _compressed_copy_cannot_be_made,
            "cannot compress {dir}/audit.log.rotating: {dir}/audit.log.1.gz.tmp: Is a directory",
        ),
    ],
    ids=["lock-file", "flock", "rotation", "compression"],
)
async def test_an_audit_failure_is_503_loses_nothing_and_the_retry_acts(  # noqa: PLR0917 -- fixtures
    aiohttp_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: Callable[[Config, pytest.MonkeyPatch], Callable[[], None]],
    reason: str,
) -> None:
    config = write_config(tmp_path, {"audit": {"max_bytes": 1024, "backup_count": 1}})
    client: TestClient = await aiohttp_client(create_app(config))
    repair = fault(config, monkeypatch)
    accepted: list[str] = []
    refused = None
    async with asyncio.timeout(HANG):
        for n in range(20):  # until the fault is hit: at once, or when a rotation is due
            body = notification(alert("redis", fingerprint=f"{n:016x}"))
            response = await client.post("/webhook", json=body, headers=AUTH)
            if response.status != 200:
                refused = body
                break
            accepted.append(f"{n:016x}")
    assert refused is not None, "the fault was never hit"
    assert response.status == 503
    assert await response.text() == "audit log unavailable: nothing was done\n"
    metrics = client.app[METRICS].registry
    assert metrics.get_sample_value("autoheal_audit_write_errors_total") == 1
    assert metrics.get_sample_value("autoheal_webhook_requests_total", {"code": "503"}) == 1
    expected = reason.format(dir=config.audit.path.parent)
    assert [r.getMessage() for r in caplog.records if r.name == "remediator.webhook"] == [
        f"webhook refused: {expected}"
    ]

    def fingerprints(events: Iterable[dict[str, Any]]) -> list[str]:
        return [e["alerts"][0]["fingerprint"] for e in events if e["event_type"] == "webhook"]

    # While it is broken, the events not rotated yet are where they were (the live file, or
    # the one set aside for compression); afterwards, in the backup and the live file.
    live = config.audit.path
    aside = live.with_name(live.name + ".rotating")
    lines = [line for p in (aside, live) if p.exists() for line in p.read_text().splitlines()]
    assert fingerprints(map(json.loads, lines)) == accepted
    assert client.app[DISPATCHER].running("redis") is None
    repair()
    async with asyncio.timeout(HANG):
        response = await client.post("/webhook", json=refused, headers=AUTH)
    assert response.status == 200, await response.text()
    assert fingerprints(iter_events(config.audit)) == [
        *accepted,
        refused["alerts"][0]["fingerprint"],
    ]
    leftovers = [p.name for p in config.audit.path.parent.iterdir()]
    assert not [name for name in leftovers if name.endswith((".rotating", ".tmp"))]


def host_config(tmp_path: Path, host: TestHost) -> Config:
    target = host.target("redis")
    target["ssh"].update(connect_timeout_seconds=1, command_timeout_seconds=3)
    return write_config(
        tmp_path,
        {
            "targets": [target],
            "health_check": {"ping_timeout_seconds": 2},
            "auto_recovery": {"retry_delay_seconds": 0.2, "stable_seconds": 0.3},
        },
    )


@pytest.mark.root
async def test_after_a_lock_failure_the_target_is_not_left_busy(
    aiohttp_client: Any,
    test_host: TestHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOLCK on the webhook's audit write: 503, nothing ran; then a person's restart is not
    refused as busy, and Alertmanager's retry of the refused alert starts a recovery that runs."""
    config = host_config(tmp_path, test_host)
    client: TestClient = await aiohttp_client(create_app(config))
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed", 10)
    body = notification(alert("redis", fingerprint="e1"))
    fail_flock_once(monkeypatch, lock_path(config))
    async with asyncio.timeout(HANG):
        response = await client.post("/webhook", json=body, headers=AUTH)
    assert response.status == 503
    assert [i.verb for i in test_host.invocations()] == []

    async with asyncio.timeout(HANG):
        response = await client.post("/api/services/redis/restart", headers=OPERATOR)
    assert response.status == 200, await response.text()
    assert [i.verb for i in test_host.invocations()] == ["restart"]
    assert test_host.ping()

    test_host.kill9()  # down again; the retried notification must act on it
    await asyncio.to_thread(test_host.wait_state, "failed", 10)
    async with asyncio.timeout(HANG):
        response = await client.post("/webhook", json=body, headers=AUTH)
        assert response.status == 200, await response.text()
        assert (await response.json())["alerts"][0]["disposition"] == "recovery_started"
        await client.app[DISPATCHER].wait_idle()
    assert client.app[DISPATCHER].history("redis")[-1].outcome == Outcome.RECOVERED
    assert [i.verb for i in test_host.invocations()] == ["restart", "restart"]
    assert test_host.ping()
    started = [
        e
        for e in read_events(config.audit)
        if e["event_type"] == "auto_recovery" and e.get("phase") == "started"
    ]
    assert [e["alert_fingerprints"] for e in started] == [["e1"]]
