"""pytest fixtures for test hosts: ``test_host`` (one, per test) and ``test_host_factory``;
and the ``root`` marker's policy.

Register with ``pytest_plugins = ["testhost.pytest_plugin"]`` in the top-level conftest.py.

The policy: a test that needs root carries the ``root`` marker, and every test using one of
these fixtures gets it at collection (``-m "not root"`` leaves them out). Without root a marked
test is skipped with the reason before any fixture runs; when the CI environment variable is
set (to anything but "", 0, false or no) it fails instead. ``require_root()``, for a test or
fixture that needs root some other way, applies the same rule and fails a test that lacks the
marker, so the marker cannot silently go missing.

``test_host`` takes options by indirect parametrisation::

    @pytest.mark.parametrize("test_host", [{"rdb": True}], indirect=True)
    def test_x(test_host): ...
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from testhost.files import HostOptions
from testhost.host import TeardownError, TestHost

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT_REASON = "needs root: network namespaces, sshd and sudo"
ROOT_MARKER = (
    "root: needs root (network namespaces, sshd, sudo); skipped when not root, failed under CI"
)
# The fixtures below: a test that uses one (directly or through another fixture) needs root.
ROOT_FIXTURES = frozenset({"test_host", "test_host_factory"})

# The test being set up, run or torn down: require_root() checks that it carries the marker.
_running: dict[str, pytest.Item] = {}


def under_ci() -> bool:
    """Whether the CI environment variable is set: then nothing may skip."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def missing(reason: str) -> None:
    """Skip with `reason`, or fail when under CI: a CI run must not pass by skipping."""
    if under_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def require_root() -> None:
    """Skip (or fail under CI) unless running as root; fail a running test not marked root."""
    item = _running.get("item")
    if item is not None and item.get_closest_marker("root") is None:
        pytest.fail(
            f"{item.nodeid} needs root but is not marked: add @pytest.mark.root, or add the "
            "fixture that needs root to the root fixtures of tests/conftest.py"
        )
    if os.geteuid() != 0:
        missing(ROOT_REASON)


def mark_root_users(items: list[pytest.Item], fixtures: frozenset[str]) -> None:
    """Mark `root` every item that uses one of `fixtures`, directly or through other fixtures."""
    for item in items:
        if fixtures.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", ROOT_MARKER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_root_users(items, ROOT_FIXTURES)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _running["item"] = item
    if item.get_closest_marker("root") is not None:
        require_root()


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish() -> None:
    _running.clear()


def _options(params: dict[str, Any] | None) -> HostOptions:
    if not params:
        return HostOptions()
    if "redis_config" in params:
        params = {**params, "redis_config": tuple(params["redis_config"])}
    return HostOptions(**params)


@pytest.fixture
def test_host(request: pytest.FixtureRequest) -> Iterator[TestHost]:
    """A running test host (Redis active), torn down after the test even if it failed."""
    require_root()
    host = TestHost.build(_options(getattr(request, "param", None)))
    try:
        yield host
    finally:
        host.teardown()


@pytest.fixture
def test_host_factory() -> Iterator[Callable[..., TestHost]]:
    """Build hosts on demand: factory(**HostOptions fields); all are torn down afterwards."""
    require_root()
    built: list[TestHost] = []

    def factory(**options: Any) -> TestHost:  # noqa: ANN401 - HostOptions fields
        host = TestHost.build(_options(options))
        built.append(host)
        return host

    yield factory
    errors: list[TeardownError] = []
    for host in reversed(built):
        try:
            host.teardown()
        except TeardownError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
