"""What mutation testing found untested in remediator/audit.py (scripts/mutation.sh): the
overdue events' bound, the blocking writer of the command line, and the error messages that
name the file at fault. Each test reads what a person reads: the audit files and the error or
log message.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from remediator import audit
from remediator.audit import AuditWriter, read_events
from remediator.errors import AuditWriteError
from tests.remediator.test_audit import event, settings


async def test_overdue_events_beyond_the_bound_drop_the_oldest_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path)
    writer = AuditWriter(s)
    writer.open()
    with caplog.at_level(logging.ERROR, logger="remediator.audit"):
        writer.defer(*(event(n) for n in range(audit.OVERDUE_MAX)))
        assert caplog.records == []  # exactly at the bound: nothing dropped
        writer.defer(*(event(n) for n in range(audit.OVERDUE_MAX, audit.OVERDUE_MAX + 3)))
    assert [r.getMessage() for r in caplog.records] == ["audit: 3 overdue events dropped"]
    assert writer.overdue == audit.OVERDUE_MAX
    await writer.write(event(-1))  # the overdue ones go out first
    await writer.close()
    seqs = [e["seq"] for e in read_events(s)]
    assert seqs == [*range(3, audit.OVERDUE_MAX + 3), -1]  # the newest kept, in order


def test_the_blocking_writer_writes_each_event_on_its_line(tmp_path: Path) -> None:
    s = settings(tmp_path)
    writer = AuditWriter(s)
    writer.open()
    writer.write_sync(event(1), event(2))
    assert [e["seq"] for e in read_events(s)] == [1, 2]


async def test_an_unusable_set_aside_file_is_named_in_the_error(tmp_path: Path) -> None:
    s = settings(tmp_path)
    s.path.parent.mkdir()
    rotating = s.path.parent / "audit.log.rotating"
    rotating.mkdir()  # what open() finds left over cannot be compressed
    writer = AuditWriter(s)
    with pytest.raises(AuditWriteError) as raised:
        writer.open()
    assert str(raised.value) == f"cannot compress {rotating}: Is a directory"


async def test_a_rotation_that_fails_names_the_file_in_the_way(tmp_path: Path) -> None:
    s = settings(tmp_path, max_bytes=600, backup_count=2, compress="none")
    writer = AuditWriter(s)
    writer.open()
    await writer.write(event(1))
    oldest = s.path.parent / "audit.log.2"
    oldest.mkdir()  # the oldest backup, to be removed, is a directory
    (oldest / "x").write_text("x")
    with pytest.raises(AuditWriteError) as raised:
        await writer.write(event(2), event(3))
    assert str(raised.value) == f"cannot rotate {s.path}: {oldest}: Is a directory"
    await writer.close()
    assert s.path.read_text().count("\n") == 1  # nothing half-written


async def test_a_rotation_that_cannot_set_the_live_file_aside_says_why(tmp_path: Path) -> None:
    s = settings(tmp_path, max_bytes=600, backup_count=2)
    writer = AuditWriter(s)
    writer.open()
    await writer.write(event(1))
    rotating = s.path.parent / "audit.log.rotating"
    rotating.mkdir()  # made while the file is open: the rename onto it fails
    (rotating / "x").write_text("x")
    with pytest.raises(AuditWriteError) as raised:
        await writer.write(event(2), event(3))
    await writer.close()
    assert str(raised.value) == f"cannot rotate {s.path}: Is a directory"
    assert s.path.read_text().count("\n") == 1  # nothing half-written
