"""Fixtures of the remediator's tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from redis_autoheal.config import Config
from remediator.app import create_app
from tests.etcd_cluster import EtcdCluster
from tests.remediator.configs import write_config

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from aiohttp.test_utils import TestClient

    from tests.remediator.hostapp import MakeClient


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Two targets without SSH (nothing can run on them) and short timings."""
    return write_config(
        tmp_path,
        {
            "targets": [{"name": "redis"}, {"name": "cache"}],
            "auto_recovery": {"retry_delay_seconds": 0.01, "stable_seconds": 0},
        },
    )


@pytest.fixture
def etcd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster on loopback, up and with a leader; indirect parameters are
    EtcdCluster's keywords (`{"apart": True}`: member 0 can be cut off)."""
    (tmp_path / "etcd").mkdir()
    cluster = EtcdCluster(tmp_path / "etcd", **getattr(request, "param", {}))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def make_client(aiohttp_client: Any) -> MakeClient:
    async def make(config: Config) -> TestClient:
        client: TestClient = await aiohttp_client(create_app(config))
        return client

    return make
