"""A small disk that fills up: a size-limited tmpfs, for "the audit log's disk is full".

    with SmallDisk(Path("/tmp/x/disk"), 4 * 1024 * 1024) as disk:
        ...            # files under disk.path
        disk.fill()    # every further write there fails with ENOSPC, as on a full disk
        disk.free()    # and succeeds again

A real mount (root only), in the root mount namespace, at a path the caller owns; `close()`
unmounts it (lazily if something still holds it open) and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from pathlib import Path

BALLAST = ".ballast"
_CHUNKS = (1 << 20, 1 << 16, 1 << 12, 1)


class SmallDisk:
    """A tmpfs of `size_bytes` mounted at `path`; see the module docstring."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.mounted = False

    @property
    def ballast(self) -> Path:
        return self.path / BALLAST

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0755", "tmpfs", self.path],
            check=True,
            capture_output=True,
            text=True,
        )
        self.mounted = True

    def fill(self) -> int:
        """Write a ballast file until the disk is full; returns the bytes it took."""
        written = 0
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            for size in _CHUNKS:
                block = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Remove the ballast: the disk has room again."""
        self.ballast.unlink(missing_ok=True)

    def full(self) -> bool:
        return self.ballast.exists()

    def close(self) -> None:
        if not self.mounted:
            return
        done = subprocess.run(["umount", self.path], check=False, capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", self.path], check=False, capture_output=True)
        self.mounted = False

    def __enter__(self) -> Self:
        self.mount()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.close()
