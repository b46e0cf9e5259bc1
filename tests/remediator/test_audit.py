"""The audit log: durable JSON lines in the runbook's format, fail closed, and a size rotation
that neither loses nor duplicates an event, even under concurrent writers."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from redis_autoheal.config import Audit
from remediator import audit
from remediator.audit import AuditWriter, audit_event, backup_paths, read_events
from remediator.breaker import BreakerStore
from remediator.errors import AuditWriteError
from testhost.disk import SmallDisk
from tests.conftest import hang_guard, require_root
from tests.remediator.conftest import write_config


def settings(tmp_path: Path, **kw: object) -> Audit:
    values: dict[str, object] = {"path": tmp_path / "audit" / "audit.log", **kw}
    return Audit(**values)  # type: ignore[arg-type]


def event(n: int, writer: str = "w") -> dict[str, object]:
    return audit_event(
        "auto_recovery",
        service="redis",
        operation="restart",
        success=n % 2 == 0,
        recovery_level="hard",
        seq=n,
        writer=writer,
    )


async def test_an_event_is_one_json_line_with_the_runbooks_fields(tmp_path: Path) -> None:
    s = settings(tmp_path)
    writer = AuditWriter(s)
    writer.open()
    await writer.write(event(1))
    await writer.close()
    line = s.path.read_text()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    data = json.loads(line)
    assert list(data)[:8] == [
        "timestamp",
        "event_type",
        "service",
        "operation",
        "user",
        "source_ip",
        "result",
        "security",
    ]
    assert data["timestamp"].endswith("Z")
    assert data["user"] == {"id": "redis-autoheal", "email": None, "role": "system"}
    assert set(data["result"]) == {"success", "duration_seconds", "exit_code"}
    assert set(data["security"]) == {"command_validated", "risk_level", "ssh_key_used"}
    assert data["recovery_level"] == "hard"
    assert '"success": false' in line  # the runbook's failure review greps exactly this


async def test_a_file_that_cannot_be_written_fails_the_write_and_counts(tmp_path: Path) -> None:
    s = settings(tmp_path)
    errors: list[int] = []
    writer = AuditWriter(s, on_error=lambda: errors.append(1))
    writer.open()
    await writer.write(event(1))
    s.path.unlink()
    s.path.symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(AuditWriteError, match="No space left"):
        await writer.write(event(2))
    assert errors == [1]
    s.path.unlink()
    s.path.mkdir()  # now it cannot even be opened
    with pytest.raises(AuditWriteError, match="cannot open"):
        await writer.write(event(3))
    assert errors == [1, 1]
    s.path.rmdir()
    await writer.write(event(4))  # writable again: it recovers by itself
    await writer.close()
    assert [e["seq"] for e in read_events(s)] == [4]


async def test_an_unwritable_directory_stops_open(tmp_path: Path) -> None:
    (tmp_path / "audit").write_text("a file where the directory should be")
    with pytest.raises(AuditWriteError, match="cannot create"):
        AuditWriter(settings(tmp_path)).open()


async def test_concurrent_writers_across_rotations_keep_every_event_once(tmp_path: Path) -> None:
    s = settings(tmp_path, max_bytes=16384, backup_count=1000)
    writer = AuditWriter(s)
    writer.open()

    async def one_writer(name: str) -> None:
        for n in range(100):
            await writer.write(event(n, name))
            if n % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(one_writer(f"w{i}") for i in range(20)))
    await writer.close()
    events = read_events(s)
    seen = [(e["writer"], e["seq"]) for e in events]
    assert len(seen) == 2000
    assert set(seen) == {(f"w{i}", n) for i in range(20) for n in range(100)}
    for i in range(20):  # each writer's events in its own order, across the files
        assert [n for w, n in seen if w == f"w{i}"] == list(range(100))
    backups = [p for p in backup_paths(s) if p.exists()]
    assert len(backups) > 5
    assert all(p.suffix == ".gz" for p in backups)
    assert s.path.stat().st_size <= 16384
    with gzip.open(backups[0], "rt") as f:
        assert all(json.loads(line) for line in f)
    assert not list(s.path.parent.glob("*.rotating"))
    assert not list(s.path.parent.glob("*.tmp"))


async def test_rotation_keeps_backup_count_files(tmp_path: Path) -> None:
    s = settings(tmp_path, max_bytes=2048, backup_count=2)
    writer = AuditWriter(s)
    writer.open()
    for n in range(100):
        await writer.write(event(n))
    await writer.close()
    names = sorted(p.name for p in s.path.parent.iterdir())
    assert names == ["audit.log", "audit.log.1.gz", "audit.log.2.gz", "audit.log.lock"]
    seqs = [e["seq"] for e in read_events(s)]
    assert seqs == list(range(100 - len(seqs), 100))  # the newest, contiguous: none lost inside


async def test_rotation_without_compression(tmp_path: Path) -> None:
    s = settings(tmp_path, max_bytes=2048, backup_count=3, compress="none")
    writer = AuditWriter(s)
    writer.open()
    for n in range(30):
        await writer.write(event(n))
    await writer.close()
    assert (tmp_path / "audit" / "audit.log.1").exists()
    assert not list(s.path.parent.glob("*.gz"))


async def test_an_event_larger_than_max_bytes_still_goes_out_whole(tmp_path: Path) -> None:
    s = settings(tmp_path, max_bytes=1024, backup_count=3)
    writer = AuditWriter(s)
    writer.open()
    await writer.write(event(1))
    big = {**event(2), "blob": "x" * 5000}
    await writer.write(big)
    await writer.close()
    assert [e["seq"] for e in read_events(s)] == [1, 2]


async def test_a_rotation_cut_short_by_a_crash_is_finished_at_open(tmp_path: Path) -> None:
    s = settings(tmp_path, max_bytes=100_000)
    s.path.parent.mkdir()
    lines = b"".join(json.dumps(event(n)).encode() + b"\n" for n in range(5))
    (s.path.parent / "audit.log.rotating").write_bytes(lines)
    s.path.write_bytes(json.dumps(event(5)).encode() + b"\n")
    writer = AuditWriter(s)
    writer.open()
    await writer.write(event(6))
    await writer.close()
    assert not (s.path.parent / "audit.log.rotating").exists()
    assert [e["seq"] for e in read_events(s)] == [0, 1, 2, 3, 4, 5, 6]


async def test_another_process_writing_meanwhile_loses_nothing(tmp_path: Path) -> None:
    """The `breaker reset` command writes with its own writer, under the same file lock."""
    s = settings(tmp_path, max_bytes=3000, backup_count=100)
    daemon, cli = AuditWriter(s), AuditWriter(s)
    daemon.open()
    cli.open()

    async def cli_writes() -> None:
        for n in range(50):
            await asyncio.to_thread(cli.write_sync, event(n, "cli"))

    async def daemon_writes() -> None:
        for n in range(50):
            await daemon.write(event(n, "daemon"))

    await asyncio.gather(cli_writes(), daemon_writes())
    await daemon.close()
    await cli.close()
    seen = sorted((e["writer"], e["seq"]) for e in read_events(s))
    assert seen == sorted([("cli", n) for n in range(50)] + [("daemon", n) for n in range(50)])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs: full after a few events."""
    require_root()
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)]
    if subprocess.run(mount, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(
        ["umount", "--lazy", str(mnt)], check=True
    )  # even if a failed test left a file open


async def test_a_write_cut_by_a_full_disk_leaves_no_partial_line(small_disk: Path) -> None:
    """ENOSPC half-way through a write: the part written is cut off, so the retry of the same
    event is the only copy of it."""
    s = Audit(path=small_disk / "audit.log", max_bytes=1 << 20, backup_count=0)
    writer = AuditWriter(s)
    writer.open()
    written, error = 0, None
    while error is None and written < 1000:
        try:
            await writer.write({**event(written), "pad": "y" * 700})
        except AuditWriteError as e:
            error = e
        else:
            written += 1
    await writer.close()
    assert "No space left" in str(error)
    text = s.path.read_text()
    assert text.endswith("\n")
    assert [json.loads(line)["seq"] for line in text.splitlines()] == list(range(written))


async def test_a_failed_write_keeps_what_another_process_appended_meanwhile(
    small_disk: Path, tmp_path: Path
) -> None:
    """The daemon's write fails on a full disk after the CLI's `breaker reset` (another process,
    its own writer) appended its event: cutting the failed write off must not cut that too."""
    config = write_config(tmp_path, {"audit": {"path": str(small_disk / "audit.log")}})
    config = replace(config, audit=replace(config.audit, backup_count=0))
    BreakerStore(config.remediator.state_dir, config.circuit_breaker).check()
    daemon = AuditWriter(config.audit)
    daemon.open()
    await daemon.write(event(1, "daemon"))
    cli = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "redis_autoheal.cli", "breaker", "reset"],
        *["--config", str(config.source), "--target", "redis"],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    _, stderr = await cli.communicate()
    assert cli.returncode == 0, stderr
    with pytest.raises(AuditWriteError, match="No space left"):
        await daemon.write({**event(2, "daemon"), "pad": "y" * 20000})  # more than the disk holds
    await daemon.write(event(3, "daemon"))
    await daemon.close()
    text = config.audit.path.read_text()
    assert text.endswith("\n")
    events = [json.loads(line) for line in text.splitlines()]
    assert [(e["event_type"], e.get("seq")) for e in events] == [
        ("auto_recovery", 1),
        ("circuit_breaker", None),
        ("auto_recovery", 3),
    ]
    assert events[1]["operation"] == "reset"


@pytest.mark.parametrize("live_mode", [None, 0o600])
async def test_a_backup_keeps_the_live_files_mode_whatever_the_umask(
    tmp_path: Path, live_mode: int | None
) -> None:
    """The audit log is not world-readable (0640, or what its owner chose): its gzip'd backup
    is not either, even under a permissive umask."""
    s = settings(tmp_path, max_bytes=2048, backup_count=3)
    first_backup = backup_paths(s)[0]
    old_umask = os.umask(0o022)
    try:
        writer = AuditWriter(s)
        writer.open()
        if live_mode is not None:
            s.path.chmod(live_mode)
        live = stat.S_IMODE(s.path.stat().st_mode)
        n = 0
        while not first_backup.exists() and n < 100:
            await writer.write(event(n))
            n += 1
        await writer.close()
    finally:
        os.umask(old_umask)
    assert live == (live_mode or 0o640)
    assert stat.S_IMODE(first_backup.stat().st_mode) == live
    assert [e["seq"] for e in read_events(s)] == list(range(n))


PAGE = 4096


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 64 KiB tmpfs, mounted; `fill()` makes every write fail with ENOSPC, `free()` undoes it."""
    require_root()
    with SmallDisk(tmp_path / "disk", 64 * 1024) as disk:
        yield disk


async def test_a_deferred_event_goes_out_ahead_of_the_next_write_once_there_is_room(
    full_disk: SmallDisk,
) -> None:
    """The end of something whose start is on disk is owed: kept while the disk is full, and
    written, once, before whatever is written next."""
    s = Audit(path=full_disk.path / "audit.log", max_bytes=1 << 20, backup_count=0)
    writer = AuditWriter(s)
    writer.open()
    await writer.write(event(0))
    full_disk.fill()
    big = "y" * 3 * PAGE  # more than the page the file has begun can take
    with pytest.raises(AuditWriteError, match="No space left"):
        await writer.write({**event(1), "pad": big})
    writer.defer(event(99, "owed"))
    with pytest.raises(AuditWriteError, match="No space left"):
        await writer.write({**event(2), "pad": big})  # still full: still owed, nothing doubled
    assert writer.overdue == 1
    full_disk.free()
    await writer.write(event(3))
    await writer.close()
    assert [(e["writer"], e["seq"]) for e in read_events(s)] == [("w", 0), ("owed", 99), ("w", 3)]
    assert writer.overdue == 0


async def test_a_deferred_event_is_retried_with_nothing_else_to_write(
    full_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "OVERDUE_RETRY_SECONDS", 0.05)
    s = Audit(path=full_disk.path / "audit.log", max_bytes=1 << 20, backup_count=0)
    failures = 0

    def failed() -> None:
        nonlocal failures
        failures += 1

    writer = AuditWriter(s, on_error=failed)
    writer.open()
    full_disk.fill()
    writer.defer(event(1, "owed"))
    async with hang_guard("two retries on the full disk"):
        while failures < 2:  # noqa: ASYNC110 -- the writer's error count is the event
            await asyncio.sleep(0.01)
    assert writer.overdue == 1
    full_disk.free()
    async with hang_guard("the overdue event's retry"):
        while writer.overdue:  # noqa: ASYNC110 -- the writer's count is the event
            await asyncio.sleep(0.05)
    await writer.close()
    assert [(e["writer"], e["seq"]) for e in read_events(s)] == [("owed", 1)]


async def test_close_writes_what_is_overdue(full_disk: SmallDisk) -> None:
    s = Audit(path=full_disk.path / "audit.log", max_bytes=1 << 20, backup_count=0)
    writer = AuditWriter(s)
    writer.open()
    full_disk.fill()
    writer.defer(event(1, "owed"))
    full_disk.free()
    await writer.close()
    assert [(e["writer"], e["seq"]) for e in read_events(s)] == [("owed", 1)]
