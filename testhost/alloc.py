"""Host index allocation shared by every process on the machine (pytest workers, the CLI).

/run/redis-autoheal-testhost/lock is flock'ed while choosing; index N is taken while the
directory /run/redis-autoheal-testhost/N exists and names a live owner ('pid starttime' in its
``owner`` file). An allocation whose owner is dead is stale: it is torn down (by the callback the
caller passes) and reused.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from testhost import procs
from testhost._standin import flocked
from testhost.netns import MAX_INDEX, Net

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

RUN_DIR = Path("/run/redis-autoheal-testhost")
LOCK_TIMEOUT = 60.0


class AllocationError(RuntimeError):
    """No host index could be allocated."""


def machine_lock(timeout: float = LOCK_TIMEOUT) -> contextlib.AbstractContextManager[None]:
    """Hold the machine-wide allocation lock (bounded wait: TimeoutError)."""
    RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    return flocked(RUN_DIR / "lock", 0o644, timeout)


def index_dir(index: int) -> Path:
    return RUN_DIR / str(index)


def read_workdir(index: int) -> tuple[Path, bool] | None:
    """The work directory recorded for an allocation and whether the harness created it."""
    try:
        path, _, created = (index_dir(index) / "workdir").read_text().partition("\n")
    except OSError:
        return None
    return (Path(path), created.strip() == "created") if path else None


def owner_alive(index: int) -> bool:
    try:
        record = (index_dir(index) / "owner").read_text()
    except OSError:
        return False
    return procs.identity_alive(record)


def allocate(owner_pid: int, reclaim: Callable[[int], None]) -> int:
    """Take the lowest free index for owner_pid, reclaiming stale allocations on the way."""
    with machine_lock():
        for index in range(1, MAX_INDEX + 1):
            directory = index_dir(index)
            if directory.exists():
                if owner_alive(index):
                    continue
                reclaim(index)
                shutil.rmtree(directory, ignore_errors=True)
            elif Net(index).exists():
                continue  # not ours to touch: no allocation record names it
            directory.mkdir(mode=0o755)
            (directory / "owner").write_text(procs.identity(owner_pid))
            return index
    raise AllocationError(f"all {MAX_INDEX} test host indexes are in use")


def set_workdir(index: int, workdir: Path, *, created: bool) -> None:
    text = f"{workdir}\n{'created' if created else 'existing'}\n"
    (index_dir(index) / "workdir").write_text(text)


def set_owner(index: int, owner_pid: int) -> None:
    """Hand the allocation to another process (the host's init, for `python -m testhost up`)."""
    tmp = index_dir(index) / "owner.tmp"
    tmp.write_text(procs.identity(owner_pid))
    tmp.replace(index_dir(index) / "owner")


def release(index: int) -> None:
    shutil.rmtree(index_dir(index), ignore_errors=True)


def stale_indexes() -> list[int]:
    """Allocations whose owner is gone."""
    if not RUN_DIR.exists():
        return []
    found = [int(p.name) for p in RUN_DIR.iterdir() if p.name.isdigit()]
    return sorted(i for i in found if not owner_alive(i))


def collect_garbage(reclaim: Callable[[int], None]) -> list[int]:
    """Tear down every stale allocation; returns the indexes reclaimed."""
    with machine_lock():
        stale = stale_indexes()
        for index in stale:
            reclaim(index)
            release(index)
    return stale
