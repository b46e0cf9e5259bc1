"""Writes `init`'s directories and files all together or not at all.

Every file is first written in full to a temporary name beside its final one (mode and owner
set, fsync'd); only when all of them are written are they renamed into place. A failure before
that removes the temporaries and the directories made for them, so the file system is as it
was. The renames themselves do not fail on a local file system once their temporaries exist.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis_autoheal.errors import InitRefused

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

Owner = tuple[int, int] | None  # (uid, gid); None: whoever runs init


@dataclass(frozen=True)
class NewDir:
    """A directory to create if missing (an existing one is left as it is)."""

    path: Path
    mode: int
    owner: Owner = None


@dataclass(frozen=True)
class NewFile:
    """A file to create or replace."""

    path: Path
    data: bytes
    mode: int
    owner: Owner = None


def write_all(dirs: Sequence[NewDir], files: Sequence[NewFile]) -> None:
    """Create `dirs` (parents first) and write `files`; on failure change nothing and raise."""
    made: list[Path] = []
    staged: list[tuple[Path, Path]] = []
    current: Path | None = None
    try:
        for d in dirs:
            current = d.path
            _make_dir(d, made)
        for f in files:
            current = f.path
            staged.append((_stage(f), f.path))
    except OSError as e:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise InitRefused(f"cannot write {current}: {e.strerror}; nothing was changed") from None
    for tmp, path in staged:
        tmp.replace(path)


def _make_dir(d: NewDir, made: list[Path]) -> None:
    missing = [p for p in (d.path, *d.path.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir()
        made.append(path)
        if path == d.path:
            path.chmod(d.mode)
            if d.owner is not None:
                os.chown(path, *d.owner)


def _stage(f: NewFile) -> Path:
    tmp = f.path.with_name(f".{f.path.name}.init-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, f.mode)
            if f.owner is not None:
                os.fchown(fd, *f.owner)
            out.write(f.data)
            out.flush()
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp
