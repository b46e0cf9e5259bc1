"""The lean encoder gives exactly generate_latest's text for everything a probe sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.utils import floatToGoString

from exporter.collector import ProbeCollector
from exporter.exposition import _number, render
from exporter.probe import (
    ConnectivityResult,
    Layer,
    PerformanceResult,
    Reason,
    SystemdResult,
)
from redis_autoheal.redis_client import parse_info


class Families:
    def __init__(self, *families):
        self.families = families

    def collect(self):
        return iter(self.families)


def _registry(collector):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


INFO = parse_info(
    "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n# Clients\r\n"
    "connected_clients:3\r\nmaxclients:10000\r\n# Memory\r\nused_memory:1127912\r\n"
    "maxmemory:0\r\nmem_fragmentation_ratio:12.20\r\n# Persistence\r\nrdb_last_save_time:"
    "1795645901\r\nrdb_last_bgsave_status:err\r\naof_enabled:0\r\n# Stats\r\n"
    "rejected_connections:5\r\ninstantaneous_ops_per_sec:123456789\r\n# Replication\r\n"
    "role:master\r\n# Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\ndb3:keys=1,expires=1\r\n"
)

RESULTS = [
    ConnectivityResult(
        layer=Layer.CONNECTIVITY, success=True, duration_seconds=0.00041, latency_seconds=3e-5
    ),
    SystemdResult(
        layer=Layer.SYSTEMD,
        success=False,
        duration_seconds=0.5,
        reason=Reason.UNKNOWN_STATE,
        message="x",
        unit="redis@a:b",
        ssh_up=True,
        state="unknown",
    ),
    PerformanceResult(
        layer=Layer.PERFORMANCE, success=True, duration_seconds=1.5, info=INFO, maxclients="10000"
    ),
]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_probe_output_is_generate_latests(count):
    registry = _registry(ProbeCollector(RESULTS[:count]))
    assert render(registry) == generate_latest(registry)


def test_failed_layers_and_escaped_labels_are_generate_latests():
    version = GaugeMetricFamily("redis_instance_info", "Role \\ and\nversion.", labels=["v"])
    version.add_metric(['7.0 "odd" \\ \n name'], 1)
    collector = Families(
        version,
        CounterMetricFamily("x_total", "A counter.", value=3),
        UnknownMetricFamily("y", "Untyped.", value=-2.5),
    )
    assert render(collector) == generate_latest(_registry(collector))
    failed = [
        ConnectivityResult(
            layer=Layer.CONNECTIVITY,
            success=False,
            duration_seconds=5,
            reason=Reason.TIMEOUT,
            message="no answer within 5s",
        ),
        SystemdResult(
            layer=Layer.SYSTEMD,
            success=False,
            duration_seconds=0.1,
            reason=Reason.HOST_KEY,
            unit="redis-server",
        ),
    ]
    registry = _registry(ProbeCollector(failed))
    assert render(registry) == generate_latest(registry)


def test_only_gauges_counters_and_untyped_are_taken():
    histogram = HistogramMetricFamily("h", "A histogram.", buckets=[("+Inf", 1)], sum_value=1)
    with pytest.raises(TypeError, match="not histogram"):
        render(Families(histogram))


@given(st.floats() | st.integers(min_value=-(2**60), max_value=2**60))
def test_numbers_are_written_as_floattogostring_does(number):
    assert _number(number) == floatToGoString(number)
