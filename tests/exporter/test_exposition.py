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
    InfoMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.collector import ProbeCollector
from exporter.exposition import Family, _number, render
from redis_autoheal.probe import (
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


@pytest.mark.parametrize("count", [1, 2])
def test_probe_output_is_generate_latests(count):
    registry = _registry(ProbeCollector(RESULTS[:count]))
    assert render(registry) == generate_latest(registry)


def test_families_are_written_as_generate_latest_writes_the_same_metrics():
    gauge = Family("redis_db_keys", "gauge", 'Keys "by" \\ DB.', ("db", "b"))
    gauge.add(5, "db0", '7.0 "odd" \\ \n name')
    gauge.add(1e21, "db1", "")
    counter = Family("x_total", "counter", "A counter.")
    counter.add(3)
    summary = Family("s", "summary", "A summary.", ("cmd",))
    summary.add_sample("", summary.label_text(("get",), 'quantile="50"'), 1.5)
    summary.add_sample("_sum", summary.label_text(("get",)), 9)
    summary.add_sample("_count", summary.label_text(("get",)), 2)

    expected_gauge = GaugeMetricFamily("redis_db_keys", 'Keys "by" \\ DB.', labels=["db", "b"])
    expected_gauge.add_metric(["db0", '7.0 "odd" \\ \n name'], 5)
    expected_gauge.add_metric(["db1", ""], 1e21)
    expected_summary = Metric("s", "A summary.", "summary")
    expected_summary.add_sample("s", {"cmd": "get", "quantile": "50"}, 1.5)
    expected_summary.add_sample("s_sum", {"cmd": "get"}, 9)
    expected_summary.add_sample("s_count", {"cmd": "get"}, 2)
    expected = Families(
        expected_gauge, CounterMetricFamily("x", "A counter.", value=3), expected_summary
    )
    assert render(Families(gauge, counter, summary)) == generate_latest(_registry(expected))


def test_a_family_keeps_a_counter_name_without_total():
    counter = Family("redis_total_error_replies", "counter", "redis_exporter's name.")
    counter.add(2)
    assert render(Families(counter)) == (
        b"# HELP redis_total_error_replies redis_exporter's name.\n"
        b"# TYPE redis_total_error_replies counter\n"
        b"redis_total_error_replies 2.0\n"
    )


def test_a_family_without_samples_is_left_out():
    assert render(Families(Family("empty", "gauge", "Nothing."))) == b""


def test_performance_output_parses_with_each_family_once():
    text = render(ProbeCollector(RESULTS)).decode()
    families = [f.name for f in text_string_to_metric_families(text)]
    assert len(families) == len(set(families))
    assert {"redis_db_keys", "redis_memory_used_bytes", "redis_instance_info"} <= set(families)


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


def test_histograms_are_taken_and_other_types_refused():
    histogram = HistogramMetricFamily("h", "A histogram.", buckets=[("+Inf", 1)], sum_value=1)
    assert render(Families(histogram)) == generate_latest(_registry(Families(histogram)))
    with pytest.raises(TypeError, match="cannot write info"):
        render(Families(InfoMetricFamily("i", "An info.", value={"a": "b"})))


@given(st.floats() | st.integers(min_value=-(2**60), max_value=2**60))
def test_numbers_are_written_as_floattogostring_does(number):
    assert _number(number) == floatToGoString(number)
