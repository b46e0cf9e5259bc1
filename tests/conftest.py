"""Shared test helpers and the skip policy.

What needs root or a Debian binary skips with a reason, and fails instead when the CI
environment variable is set: under CI nothing skips (a skip of any other origin is turned into
a failure too). Tests that need root carry the `root` marker: testhost.pytest_plugin marks
the users of its host fixtures, this file those of the other fixtures that need root, and
require_root() fails a test that needs root without the marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The plugin is registered below (pytest_plugins) but imported here first, for its policy:
# rewrite its asserts as pytest would have.
pytest.register_assert_rewrite("testhost.pytest_plugin")

from testhost.pytest_plugin import (  # noqa: E402 -- after register_assert_rewrite
    mark_root_users,
    missing,
    require_root,
    under_ci,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Generator

__all__ = [
    "HANG",
    "free_port",
    "hang_guard",
    "missing",
    "require_binary",
    "require_root",
    "require_shared",
    "under_ci",
]

REPO = Path(__file__).resolve().parents[1]
# Seconds after which a test's wait counts as a hang. Only a guard: nothing here measures
# speed (bench/ does); a test that needs a wrong behaviour to be slow makes it much slower.
HANG = 60.0
# Fixtures of this repository's tests that need root, besides testhost's (which it marks):
# the end-to-end stacks (a test host each), and tests/remediator's small tmpfs disks.
ROOT_FIXTURES = frozenset({"make_stack", "stack", "small_disk", "full_disk"})


def require_binary(name: str) -> str:
    """Return the path of a binary from Debian's packages; skip (or fail under CI) if absent."""
    path = shutil.which(name)
    if path is None:
        missing(f"needs {name}: run scripts/setup.sh to install it")
        raise AssertionError  # unreachable: missing() raised
    return path


def require_shared(name: str) -> Path:
    """A file of the project's shared specs (runbook.md, CONTRACT.md), which live outside the
    repository: in $REDIS_AUTOHEAL_SHARED, or in shared/ beside the clone (where CI puts it),
    or a developer's /work/shared. Skip (or fail under CI) when none has it."""
    places = [REPO.parent / "shared", Path("/work/shared")]
    if os.environ.get("REDIS_AUTOHEAL_SHARED"):
        places.insert(0, Path(os.environ["REDIS_AUTOHEAL_SHARED"]))
    for place in places:
        if (place / name).is_file():
            return place / name
    missing(f"needs shared/{name}: set REDIS_AUTOHEAL_SHARED to the shared/ directory")
    raise AssertionError  # unreachable: missing() raised


@contextlib.asynccontextmanager
async def hang_guard(what: str, seconds: float = HANG) -> AsyncIterator[None]:
    """Fail, naming `what`, if the block has not ended after `seconds`: a hang, not slowness."""
    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError:
        if scope.expired():
            pytest.fail(f"{what}: still running after {seconds:g}s, a hang")
        raise


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_root_users(items, ROOT_FIXTURES)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Under CI a skip is a failure, whoever skipped (pytest.skip in a test, a skip marker).
    report = yield
    if report.skipped and under_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must not skip: {reason}"
    return report


pytest_plugins = ["testhost.pytest_plugin"]
