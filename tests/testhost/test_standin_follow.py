"""`journalctl -f` of the stand-in: the newest entries, then each new one, until its reader goes.

Run as its own process over a journal file of its own (journalctl refuses non-root users, as
the real one refuses users outside the journal's groups).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testhost import _standin as s
from tests.support import HANG

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
RUN = (
    "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
    "from testhost import _standin as s; "
    "sys.exit(s.journalctl_main(s.Paths(Path(sys.argv[2])), sys.argv[3:]))"
)


def _log(state: Path, msg: str, *, ident: str = "systemd", pid: int = 1) -> None:
    entry = {"ts": time.time(), "host": "vm3", "ident": ident, "pid": pid, "prio": 6}
    entry |= {"unit": "redis-server.service", "msg": msg}
    with (state / "journal.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


@contextlib.contextmanager
def _follow(state: Path, *argv: str) -> Iterator[subprocess.Popen[str]]:
    """The stand-in following; killed at the end of the block. Its stderr: state/stderr."""
    with (
        (state / "stderr").open("w") as err,
        subprocess.Popen(
            [sys.executable, "-c", RUN, str(ROOT), str(state), *argv],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as follower,
    ):
        try:
            yield follower
        finally:
            follower.kill()


def test_follow_prints_the_newest_entries_then_each_new_one(tmp_path):
    for i in range(3):
        _log(tmp_path, f"old {i}")
    with _follow(tmp_path, "-u", "redis-server", "-f", "-n", "1", "-o", "json") as follower:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        assert first["MESSAGE"] == "old 2"
        assert first["UNIT"] == "redis-server.service"
        _log(tmp_path, "Main process exited, code=killed, status=9/KILL")
        _log(tmp_path, "redis output", ident="redis-server", pid=42)
        new = [json.loads(follower.stdout.readline()) for _ in range(2)]
        assert [e["MESSAGE"] for e in new] == [
            "Main process exited, code=killed, status=9/KILL",
            "redis output",
        ]
        assert new[1]["_SYSTEMD_UNIT"] == "redis-server.service"
        assert "UNIT" not in new[1]


def test_follow_without_lines_shows_the_last_ten_like_journalctl(tmp_path):
    for i in range(12):
        _log(tmp_path, f"entry {i}")
    with _follow(tmp_path, "-u", "redis-server", "-f", "-o", "cat") as follower:
        assert follower.stdout is not None
        assert [follower.stdout.readline().strip() for _ in range(10)] == [
            f"entry {i}" for i in range(2, 12)
        ]


def test_follow_ends_when_its_reader_goes_away(tmp_path):
    _log(tmp_path, "one")
    with _follow(tmp_path, "-u", "redis-server", "-f", "-n", "0") as follower:
        assert follower.stdout is not None
        follower.stdout.close()  # nothing more is written: only POLLHUP can tell it
        assert follower.wait(HANG) == 1  # systemd 252: -ECANCELED, a failure (0 from v258)
    assert (tmp_path / "stderr").read_text() == ""


def test_follow_and_reverse_are_refused_together():
    with pytest.raises(s.UsageError, match="either --reverse or --follow"):
        s.parse_journalctl(["-f", "-r"])
