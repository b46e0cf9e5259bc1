"""Turns one /probe's layer results into metric families, for a registry built per request.

Names follow CONTRACT.md, and redis_exporter's names and units wherever it exports the same
quantity, so community dashboards and rules keep working. A sample for module=all (HELP and TYPE
lines left out), where SSH works, the unit is active, and Redis answers:

    redis_probe_success{layer="connectivity"} 1.0
    redis_probe_success{layer="systemd"} 1.0
    redis_probe_success{layer="performance"} 1.0
    redis_probe_duration_seconds{layer="connectivity"} 0.00052
    redis_probe_duration_seconds{layer="systemd"} 0.0127
    redis_probe_duration_seconds{layer="performance"} 0.00071
    redis_up 1.0
    redis_ping_latency_seconds 0.00049
    redis_ssh_up 1.0
    redis_systemd_unit_state{state="active",unit="redis-server"} 1.0
    redis_systemd_unit_state{state="reloading",unit="redis-server"} 0.0
    ... (inactive, failed, activating, deactivating: 0.0)
    redis_memory_used_bytes 1.127912e+06
    redis_memory_max_bytes 0.0
    redis_connected_clients 2.0
    redis_config_maxclients 10000.0
    redis_rejected_connections_total 0.0
    redis_rdb_last_bgsave_status 1.0
    redis_instance_info{redis_version="7.0.15",role="master"} 1.0
    redis_db_keys{db="db0"} 10.0

A layer that failed adds `redis_probe_error{layer,reason} 1.0`, reason from the fixed set of
exporter.probe.Reason, and sends none of its own series but redis_up 0 / redis_ssh_up 0.

`redis_systemd_unit_state{unit,state}` is 1 for the current state and 0 for each other of
active, reloading, inactive, failed, activating, deactivating. A state outside those six
(maintenance, refreshing, ...) gives all six 0 and one more series, state="unknown", at 1,
plus `redis_probe_error{layer="systemd",reason="unknown_state"}`. When the state could not
be read (SSH down, no `ssh` section, systemctl printed nothing) no unit-state series is sent:
`redis_ssh_up` and `redis_probe_error` say why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.probe import (
    UNIT_STATES,
    UNKNOWN_STATE,
    ConnectivityResult,
    LayerResult,
    PerformanceResult,
    SystemdResult,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _ok(text: str) -> float:
    return 1.0 if text == "ok" else 0.0


# (metric, INFO field, help) for plain numeric fields. Counters keep redis_exporter's names.
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("redis_memory_used_bytes", "used_memory", "Memory used by Redis (INFO used_memory)."),
    ("redis_memory_max_bytes", "maxmemory", "maxmemory; 0 means no limit."),
    (
        "redis_memory_used_rss_bytes",
        "used_memory_rss",
        "Resident memory of the Redis process (INFO used_memory_rss).",
    ),
    ("redis_mem_fragmentation_ratio", "mem_fragmentation_ratio", "RSS over used memory."),
    ("redis_connected_clients", "connected_clients", "Client connections, replicas excluded."),
    ("redis_blocked_clients", "blocked_clients", "Clients blocked in BLPOP, WAIT and the like."),
    ("redis_connected_slaves", "connected_slaves", "Connected replicas."),
    (
        "redis_instantaneous_ops_per_sec",
        "instantaneous_ops_per_sec",
        "Commands per second, as Redis samples them.",
    ),
    ("redis_uptime_in_seconds", "uptime_in_seconds", "Seconds since the Redis server started."),
    (
        "redis_rdb_last_save_timestamp_seconds",
        "rdb_last_save_time",
        "Unix time of the last successful RDB save.",
    ),
    (
        "redis_rdb_changes_since_last_save",
        "rdb_changes_since_last_save",
        "Writes since the last RDB save.",
    ),
    ("redis_rdb_bgsave_in_progress", "rdb_bgsave_in_progress", "1 while a BGSAVE runs."),
    ("redis_aof_enabled", "aof_enabled", "1 if the append-only file is on."),
    ("redis_aof_rewrite_in_progress", "aof_rewrite_in_progress", "1 while an AOF rewrite runs."),
    ("redis_loading_dump_file", "loading", "1 while Redis loads its dataset."),
)
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (
        "redis_rejected_connections_total",
        "rejected_connections",
        "Connections refused because maxclients was reached.",
    ),
    (
        "redis_connections_received_total",
        "total_connections_received",
        "Connections accepted.",
    ),
    ("redis_commands_processed_total", "total_commands_processed", "Commands processed."),
    ("redis_evicted_keys_total", "evicted_keys", "Keys evicted because of maxmemory."),
    ("redis_expired_keys_total", "expired_keys", "Keys removed because they expired."),
)
# (metric, INFO field, help) for "ok"/"err" fields: 1 ok, 0 failed.
_STATUSES: tuple[tuple[str, str, str], ...] = (
    ("redis_rdb_last_bgsave_status", "rdb_last_bgsave_status", "1 if the last BGSAVE succeeded."),
    (
        "redis_aof_last_write_status",
        "aof_last_write_status",
        "1 if the last AOF write succeeded.",
    ),
    (
        "redis_aof_last_bgrewrite_status",
        "aof_last_bgrewrite_status",
        "1 if the last AOF rewrite succeeded.",
    ),
)


class ProbeCollector:
    """Yields the metric families of one probe's results; registered on a fresh registry."""

    def __init__(self, results: Sequence[LayerResult]) -> None:
        self.results = results

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "redis_probe_success", "1 if the layer's check passed.", labels=["layer"]
        )
        duration = GaugeMetricFamily(
            "redis_probe_duration_seconds", "How long the layer's probe took.", labels=["layer"]
        )
        error = GaugeMetricFamily(
            "redis_probe_error",
            "1 for a layer that failed, with why: timeout, refused, unreachable, auth, tls, "
            "ssh_auth, host_key, ... (see exporter/probe.py Reason).",
            labels=["layer", "reason"],
        )
        for r in self.results:
            success.add_metric([r.layer], 1.0 if r.success else 0.0)
            duration.add_metric([r.layer], r.duration_seconds)
            if r.reason is not None:
                error.add_metric([r.layer, r.reason], 1.0)
        yield success
        yield duration
        if error.samples:
            yield error
        for r in self.results:
            if isinstance(r, ConnectivityResult):
                yield from _connectivity(r)
            elif isinstance(r, SystemdResult):
                yield from _systemd(r)
            elif isinstance(r, PerformanceResult) and r.success:
                yield from _performance(r.info, r.maxclients)


def _connectivity(r: ConnectivityResult) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "redis_up", "1 if Redis answered PING.", value=1.0 if r.success else 0.0
    )
    if r.latency_seconds is not None:
        yield GaugeMetricFamily(
            "redis_ping_latency_seconds", "Round trip of PING.", value=r.latency_seconds
        )


def _systemd(r: SystemdResult) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "redis_ssh_up", "1 if a command ran over SSH on the unit's host.", value=float(r.ssh_up)
    )
    if r.state is None:
        return
    states = GaugeMetricFamily(
        "redis_systemd_unit_state",
        "1 for the unit's current state (systemctl is-active), 0 for the others.",
        labels=["unit", "state"],
    )
    for state in UNIT_STATES:
        states.add_metric([r.unit, state], 1.0 if state == r.state else 0.0)
    if r.state == UNKNOWN_STATE:
        states.add_metric([r.unit, UNKNOWN_STATE], 1.0)
    yield states


def _performance(info: Mapping[str, str], maxclients: str | None) -> Iterator[Metric]:
    for name, key, doc in _GAUGES:
        text = info.get(key)
        value = None if text is None else _number(text)
        if value is not None:
            yield GaugeMetricFamily(name, doc, value=value)
    value = None if maxclients is None else _number(maxclients)
    if value is not None:
        yield GaugeMetricFamily("redis_config_maxclients", "maxclients.", value=value)
    for name, key, doc in _COUNTERS:
        text = info.get(key)
        value = None if text is None else _number(text)
        if value is not None:
            yield CounterMetricFamily(name, doc, value=value)
    for name, key, doc in _STATUSES:
        text = info.get(key)
        if text is not None:
            yield GaugeMetricFamily(name, doc, value=_ok(text))
    role, version = info.get("role"), info.get("redis_version")
    if role is not None and version is not None:
        instance = GaugeMetricFamily(
            "redis_instance_info",
            "The server's role and version.",
            labels=["role", "redis_version"],
        )
        instance.add_metric([role, version], 1.0)
        yield instance
    yield from _keyspace(info)


def _keyspace(info: Mapping[str, str]) -> Iterator[Metric]:
    """redis_db_keys{db="db0"} from INFO keyspace lines `db0:keys=1,expires=0,avg_ttl=0`."""
    keys = GaugeMetricFamily("redis_db_keys", "Keys in the database.", labels=["db"])
    for name, value in info.items():
        if name.startswith("db") and name[2:].isdigit():
            fields = dict(part.partition("=")[::2] for part in value.split(","))
            count = _number(fields.get("keys", ""))
            if count is not None:
                keys.add_metric([name], count)
    if keys.samples:
        yield keys
