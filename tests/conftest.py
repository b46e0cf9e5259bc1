"""The skip policy, as pytest hooks, and fixtures for Debian's tools; the helpers tests import
are in tests/support.py.

What needs root or a Debian binary skips with a reason, and fails instead when the CI
environment variable is set: under CI nothing skips (a skip of any other origin is turned into
a failure too). Tests that need root carry the `root` marker: testhost.pytest_plugin marks
the users of its host fixtures, this file those of the other fixtures that need root, and
require_root() fails a test that needs root without the marker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

# The plugin is registered below (pytest_plugins) but imported here first, for its policy:
# rewrite its asserts as pytest would have.
pytest.register_assert_rewrite("testhost.pytest_plugin")

from testhost.pytest_plugin import mark_root_users, under_ci  # noqa: E402 -- after the rewrite
from tests.support import require_binary  # noqa: E402 -- after the rewrite

if TYPE_CHECKING:
    from collections.abc import Generator

# Fixtures of this repository's tests that need root, besides testhost's (which it marks):
# the end-to-end stacks (a test host each), and tests/remediator's small tmpfs disks.
ROOT_FIXTURES = frozenset({"make_stack", "stack", "small_disk", "full_disk"})


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_binary("amtool")


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
