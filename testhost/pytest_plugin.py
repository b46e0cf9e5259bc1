"""pytest fixtures for test hosts: ``test_host`` (one, per test) and ``test_host_factory``.

Register with ``pytest_plugins = ["testhost.pytest_plugin"]`` in the top-level conftest.py.
Both fixtures need root: without it they skip with the reason, or fail when the CI environment
variable is set (the same rule as tests/conftest.py's require_root()).

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


def require_root() -> None:
    """Skip (or fail under CI) unless running as root; tests/conftest.py's rule, repeated here."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{ROOT_REASON} (CI is set, so this is a failure, not a skip)")
        pytest.skip(ROOT_REASON)


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
