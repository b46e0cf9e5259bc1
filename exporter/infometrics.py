"""redis_exporter's metric families, derived from one scrape's INFO ALL and the commands beside it.

The plain fields of INFO go through two tables, INFO field -> metric name: one for gauges, one
for counters, with redis_exporter's names (its counters keep their names even where they lack
`_total`, as `redis_total_error_replies`; some of its gauges end in `_total`). Values `ok` and
`true` are 1, `err`, `fail` and `false` are 0; a field missing from a table is not sent, except
`cluster_*` fields (INFO's Cluster section and CLUSTER INFO), sent as gauges under their own
name, as redis_exporter does. The fields with a structure each have a rule:

    db0:keys=5,expires=1,avg_ttl=998062      redis_db_keys{db="db0"} 5
                                             redis_db_keys_expiring{db="db0"} 1
                                             redis_db_avg_ttl_seconds{db="db0"} 998.062
    cmdstat_get:calls=2,usec=9,...,          redis_commands_total{cmd="get"} 2 (counter)
      rejected_calls=0,failed_calls=0        redis_commands_duration_seconds_total{cmd="get"}
                                             redis_commands_rejected_calls_total{cmd="get"}
                                             redis_commands_failed_calls_total{cmd="get"}
    latency_percentiles_usec_get:p50=1.003   redis_latency_percentiles_usec{cmd="get",
                                               quantile="50"} 1.003 (summary; _sum in µs
                                               and _count from cmdstat)
    errorstat_ERR:count=1                    redis_errors_total{err="ERR"} 1 (counter)
    slave0:ip=..,port=..,state=..,           redis_connected_slave_offset_bytes and
      offset=..,lag=..                         redis_connected_slave_lag_seconds
                                               {slave_ip,slave_port,slave_state}
    master_link_status:up (on a replica)     redis_master_link_up{master_host,master_port} 1,
                                             and master_last_io_seconds_ago,
                                             master_sync_in_progress, slave_repl_offset
    module:name=..,ver=..,...                redis_module_info{name,ver,api,filters,usedby,using}
    uptime_in_seconds                        also redis_start_time_seconds
    latest_fork_usec                         redis_latest_fork_seconds
    used_active_time_io_thread_N             redis_active_time_io_thread_seconds_total{thread}

plus `redis_instance_info` (role, versions, mode, os, policy, port, run id, pid, replication
id) and, on a replica, `redis_slave_info{master_host,master_port,read_only}`.

Where redis_exporter needs a flag, ours: `redis_total_system_memory_bytes`
(--include-system-metrics) and `redis_module_info` (--include-modules-metrics) are always
sent, one series each per instance or loaded module; db_keys of empty databases are sent as 0
(its default since 1.45); the latency histograms need `exporter.latency_histograms: true`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from exporter.exposition import Family

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from exporter.scrape import LatencyHistogram, RedisScrape

# INFO field -> gauge name (without the `redis_` namespace), redis_exporter's names.
GAUGES: dict[str, str] = {
    # Server
    "uptime_in_seconds": "uptime_in_seconds",
    "process_id": "process_id",
    "io_threads_active": "io_threads_active",
    # Clients
    "connected_clients": "connected_clients",
    "blocked_clients": "blocked_clients",
    "maxclients": "max_clients",
    "tracking_clients": "tracking_clients",
    "clients_in_timeout_table": "clients_in_timeout_table",
    "pubsub_clients": "pubsub_clients",
    "watching_clients": "watching_clients",
    "total_watched_keys": "total_watched_keys",
    "total_blocking_keys": "total_blocking_keys",
    "total_blocking_keys_on_nokey": "total_blocking_keys_on_nokey",
    "client_longest_output_list": "client_longest_output_list",
    "client_biggest_input_buf": "client_biggest_input_buf",
    "client_recent_max_output_buffer": "client_recent_max_output_buffer_bytes",
    "client_recent_max_input_buffer": "client_recent_max_input_buffer_bytes",
    # Memory
    "allocator_active": "allocator_active_bytes",
    "allocator_allocated": "allocator_allocated_bytes",
    "allocator_resident": "allocator_resident_bytes",
    "allocator_frag_ratio": "allocator_frag_ratio",
    "allocator_frag_bytes": "allocator_frag_bytes",
    "allocator_muzzy": "allocator_muzzy_bytes",
    "allocator_rss_ratio": "allocator_rss_ratio",
    "allocator_rss_bytes": "allocator_rss_bytes",
    "used_memory": "memory_used_bytes",
    "used_memory_rss": "memory_used_rss_bytes",
    "used_memory_peak": "memory_used_peak_bytes",
    "used_memory_lua": "memory_used_lua_bytes",
    "used_memory_vm_eval": "memory_used_vm_eval_bytes",
    "used_memory_scripts_eval": "memory_used_scripts_eval_bytes",
    "used_memory_overhead": "memory_used_overhead_bytes",
    "used_memory_startup": "memory_used_startup_bytes",
    "used_memory_dataset": "memory_used_dataset_bytes",
    "number_of_cached_scripts": "number_of_cached_scripts",
    "number_of_functions": "number_of_functions",
    "number_of_libraries": "number_of_libraries",
    "used_memory_vm_functions": "memory_used_vm_functions_bytes",
    "used_memory_scripts": "memory_used_scripts_bytes",
    "used_memory_functions": "memory_used_functions_bytes",
    "used_memory_vm_total": "memory_used_vm_total",
    "maxmemory": "memory_max_bytes",
    "maxmemory_reservation": "memory_max_reservation_bytes",
    "maxmemory_desired_reservation": "memory_max_reservation_desired_bytes",
    "maxfragmentationmemory_reservation": "memory_max_fragmentation_reservation_bytes",
    "maxfragmentationmemory_desired_reservation": (
        "memory_max_fragmentation_reservation_desired_bytes"
    ),
    "mem_fragmentation_ratio": "mem_fragmentation_ratio",
    "mem_fragmentation_bytes": "mem_fragmentation_bytes",
    "mem_clients_slaves": "mem_clients_slaves",
    "mem_clients_normal": "mem_clients_normal",
    "mem_cluster_links": "mem_cluster_links_bytes",
    "mem_aof_buffer": "mem_aof_buffer_bytes",
    "mem_replication_backlog": "mem_replication_backlog_bytes",
    "expired_stale_perc": "expired_stale_percentage",
    "mem_not_counted_for_evict": "mem_not_counted_for_eviction_bytes",
    "mem_total_replication_buffers": "mem_total_replication_buffers_bytes",
    "mem_overhead_db_hashtable_rehashing": "mem_overhead_db_hashtable_rehashing_bytes",
    "lazyfree_pending_objects": "lazyfree_pending_objects",
    "lazyfreed_objects": "lazyfreed_objects",
    "active_defrag_running": "active_defrag_running",
    "migrate_cached_sockets": "migrate_cached_sockets_total",
    "active_defrag_hits": "defrag_hits",
    "active_defrag_misses": "defrag_misses",
    "active_defrag_key_hits": "defrag_key_hits",
    "active_defrag_key_misses": "defrag_key_misses",
    "total_system_memory": "total_system_memory_bytes",  # redis_exporter: a flag; ours: always
    # Persistence
    "loading": "loading_dump_file",
    "async_loading": "async_loading",
    "rdb_changes_since_last_save": "rdb_changes_since_last_save",
    "rdb_bgsave_in_progress": "rdb_bgsave_in_progress",
    "rdb_last_save_time": "rdb_last_save_timestamp_seconds",
    "rdb_last_bgsave_status": "rdb_last_bgsave_status",
    "rdb_last_bgsave_time_sec": "rdb_last_bgsave_duration_sec",
    "rdb_current_bgsave_time_sec": "rdb_current_bgsave_duration_sec",
    "rdb_saves": "rdb_saves_total",
    "rdb_last_cow_size": "rdb_last_cow_size_bytes",
    "rdb_last_load_keys_expired": "rdb_last_load_expired_keys",
    "rdb_last_load_keys_loaded": "rdb_last_load_loaded_keys",
    "aof_enabled": "aof_enabled",
    "aof_rewrite_in_progress": "aof_rewrite_in_progress",
    "aof_rewrite_scheduled": "aof_rewrite_scheduled",
    "aof_last_rewrite_time_sec": "aof_last_rewrite_duration_sec",
    "aof_current_rewrite_time_sec": "aof_current_rewrite_duration_sec",
    "aof_last_cow_size": "aof_last_cow_size_bytes",
    "aof_current_size": "aof_current_size_bytes",
    "aof_base_size": "aof_base_size_bytes",
    "aof_pending_rewrite": "aof_pending_rewrite",
    "aof_buffer_length": "aof_buffer_length",
    "aof_rewrite_buffer_length": "aof_rewrite_buffer_length",
    "aof_pending_bio_fsync": "aof_pending_bio_fsync",
    "aof_delayed_fsync": "aof_delayed_fsync",
    "aof_last_bgrewrite_status": "aof_last_bgrewrite_status",
    "aof_last_write_status": "aof_last_write_status",
    "module_fork_in_progress": "module_fork_in_progress",
    "module_fork_last_cow_size": "module_fork_last_cow_size",
    # Stats
    "current_eviction_exceeded_time": "current_eviction_exceeded_time_ms",
    "pubsub_channels": "pubsub_channels",
    "pubsub_patterns": "pubsub_patterns",
    "pubsubshard_channels": "pubsubshard_channels",
    "latest_fork_usec": "latest_fork_usec",  # sent in seconds, as latest_fork_seconds
    "tracking_total_keys": "tracking_total_keys",
    "tracking_total_items": "tracking_total_items",
    "tracking_total_prefixes": "tracking_total_prefixes",
    "instantaneous_eventloop_cycles_per_sec": "instantaneous_eventloop_cycles_per_sec",
    "instantaneous_eventloop_duration_usec": "instantaneous_eventloop_duration_usec",
    "instantaneous_ops_per_sec": "instantaneous_ops_per_sec",  # ours (CONTRACT.md)
    # Replication
    "connected_slaves": "connected_slaves",
    "repl_backlog_size": "replication_backlog_bytes",
    "repl_backlog_active": "repl_backlog_is_active",
    "repl_backlog_first_byte_offset": "repl_backlog_first_byte_offset",
    "repl_backlog_histlen": "repl_backlog_history_bytes",
    "master_repl_offset": "master_repl_offset",
    "second_repl_offset": "second_repl_offset",
    "slave_expires_tracked_keys": "slave_expires_tracked_keys",
    "slave_priority": "slave_priority",
    "sync_full": "replica_resyncs_full",
    "sync_partial_ok": "replica_partial_resync_accepted",
    "sync_partial_err": "replica_partial_resync_denied",
    # Cluster (CLUSTER INFO)
    "cluster_stats_messages_sent": "cluster_messages_sent_total",
    "cluster_stats_messages_received": "cluster_messages_received_total",
}

# INFO field -> counter name.
COUNTERS: dict[str, str] = {
    "total_connections_received": "connections_received_total",
    "total_commands_processed": "commands_processed_total",
    "rejected_connections": "rejected_connections_total",
    "total_net_input_bytes": "net_input_bytes_total",
    "total_net_output_bytes": "net_output_bytes_total",
    "total_net_repl_input_bytes": "net_repl_input_bytes_total",
    "total_net_repl_output_bytes": "net_repl_output_bytes_total",
    "expired_subkeys": "expired_subkeys_total",
    "expired_keys": "expired_keys_total",
    "expired_time_cap_reached_count": "expired_time_cap_reached_total",
    "expire_cycle_cpu_milliseconds": "expire_cycle_cpu_time_ms_total",
    "evicted_keys": "evicted_keys_total",
    "evicted_clients": "evicted_clients_total",
    "evicted_scripts": "evicted_scripts_total",
    "total_eviction_exceeded_time": "eviction_exceeded_time_ms_total",
    "keyspace_hits": "keyspace_hits_total",
    "keyspace_misses": "keyspace_misses_total",
    "eventloop_cycles": "eventloop_cycles_total",
    "eventloop_duration_sum": "eventloop_duration_sum_usec_total",
    "eventloop_duration_cmd_sum": "eventloop_duration_cmd_sum_usec_total",
    "used_cpu_sys": "cpu_sys_seconds_total",
    "used_cpu_user": "cpu_user_seconds_total",
    "used_cpu_sys_children": "cpu_sys_children_seconds_total",
    "used_cpu_user_children": "cpu_user_children_seconds_total",
    "used_cpu_sys_main_thread": "cpu_sys_main_thread_seconds_total",
    "used_cpu_user_main_thread": "cpu_user_main_thread_seconds_total",
    "unexpected_error_replies": "unexpected_error_replies",
    "total_error_replies": "total_error_replies",
    "dump_payload_sanitizations": "dump_payload_sanitizations",
    "total_reads_processed": "total_reads_processed",
    "total_writes_processed": "total_writes_processed",
    "io_threaded_reads_processed": "io_threaded_reads_processed",
    "io_threaded_writes_processed": "io_threaded_writes_processed",
    "client_query_buffer_limit_disconnections": "client_query_buffer_limit_disconnections_total",
    "client_output_buffer_limit_disconnections": "client_output_buffer_limit_disconnections_total",
    "reply_buffer_shrinks": "reply_buffer_shrinks_total",
    "reply_buffer_expands": "reply_buffer_expands_total",
    "acl_access_denied_auth": "acl_access_denied_auth_total",
    "acl_access_denied_cmd": "acl_access_denied_cmd_total",
    "acl_access_denied_key": "acl_access_denied_key_total",
    "acl_access_denied_channel": "acl_access_denied_channel_total",
    "used_active_time_main_thread": "active_time_main_thread_seconds_total",
}

# CONFIG GET setting -> gauge name.
CONFIG_GAUGES = {
    "io-threads": "config_io_threads",
    "maxclients": "config_maxclients",
    "maxmemory": "config_maxmemory",
    "repl-backlog-size": "config_repl_backlog_size",
}

INSTANCE_INFO_LABELS = (
    "role",
    "redis_version",
    "redis_build_id",
    "redis_mode",
    "os",
    "maxmemory_policy",
    "tcp_port",
    "run_id",
    "process_id",
    "master_replid",
)
DEFAULT_DATABASES = 16  # when CONFIG GET databases is not allowed, as redis_exporter assumes
MAX_DATABASES = 1024  # db_keys zeros are sent for at most this many databases

_NS = "redis_"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")
_IO_THREAD = re.compile(r"used_active_time_io_thread_([0-9]+)")
_SLAVE = re.compile(r"slave[0-9]+")
_MASTER_FIELDS = {
    "master_last_io_seconds_ago": "master_last_io_seconds_ago",
    "master_sync_in_progress": "master_sync_in_progress",
    "slave_repl_offset": "slave_repl_offset",
}
_TRUE = {"ok": 1.0, "true": 1.0, "err": 0.0, "fail": 0.0, "false": 0.0}


def _value(text: str) -> float | None:
    known = _TRUE.get(text)
    if known is not None:
        return known
    try:
        return float(text)
    except ValueError:
        return None


def _pairs(text: str) -> dict[str, str]:
    """`keys=5,expires=1,avg_ttl=9` -> {"keys": "5", ...}."""
    return dict(part.partition("=")[::2] for part in text.split(","))


def _single(name: str, kind: str, value: float) -> Family:
    family = Family(_NS + name, kind, f"{name} metric")
    family.add(value)
    return family


class _Labelled:
    """The families with labels, made on first use, in the order redis_exporter sends them."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def get(self, name: str, kind: str, documentation: str, labels: tuple[str, ...]) -> Family:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = Family(_NS + name, kind, documentation, labels)
        return family


class _Fields:
    """What the loop over INFO's fields gathers for the families made after it."""

    def __init__(self, info: Mapping[str, str]) -> None:
        self.labelled = _Labelled()
        self.commands: dict[str, tuple[float, float]] = {}  # cmd -> (calls, µs)
        self.percentiles: dict[str, list[tuple[str, float]]] = {}
        self.databases: set[str] = set()
        self.master = (info.get("master_host", ""), info.get("master_port", ""))

    def structured(self, key: str, text: str) -> bool:
        """Take a field with a structure (see the module's docstring); False for a plain one."""
        labelled = self.labelled
        if key.startswith("cmdstat_"):
            _command(labelled, key[8:], text, self.commands)
        elif key.startswith("latency_percentiles_usec_"):
            _percentiles(key[25:], text, self.percentiles)
        elif key.startswith("errorstat_"):
            count = _value(_pairs(text).get("count", ""))
            if count is not None:
                labelled.get(
                    "errors_total", "counter", "Total number of errors per error type", ("err",)
                ).add(count, key[10:])
        elif key.startswith("db") and key[2:].isdigit():
            if _database(labelled, key, text):
                self.databases.add(key)
        elif _SLAVE.fullmatch(key):
            _replica(labelled, text)
        elif key == "master_link_status" or key in _MASTER_FIELDS:
            _master(labelled, key, text, self.master)
        elif key == "module":
            _module(labelled, text)
        else:
            return False
        return True


def info_families(scrape: RedisScrape, now: float) -> Iterator[Family]:
    """Every family of one scrape, redis_exporter's plus our `redis_instantaneous_ops_per_sec`."""
    info = scrape.info
    fields = _Fields(info)
    for key, text in info.items():
        if not fields.structured(key, text):
            yield from _plain(key, text, now)
    _empty_databases(fields.labelled, scrape, fields.databases)
    yield from fields.labelled.families.values()
    yield from _percentile_summaries(fields.percentiles, fields.commands)
    yield from _instance(info)
    yield from _cluster(scrape.cluster_info)
    yield from _config(scrape.config, info)
    yield from _slowlog(scrape)
    yield from _latency(scrape)
    if scrape.latency_histograms is not None:
        yield from _histograms(scrape.latency_histograms, fields.commands)


def _master(labelled: _Labelled, key: str, text: str, master: tuple[str, str]) -> None:
    """A replica's link to its master, labelled with the master's host and port."""
    labels = ("master_host", "master_port")
    if key == "master_link_status":
        link = labelled.get("master_link_up", "gauge", "Master link status on Redis slave", labels)
        link.add(1.0 if text == "up" else 0.0, *master)
        return
    number = _value(text)
    family = labelled.get(_MASTER_FIELDS[key], "gauge", key.replace("_", " "), labels)
    family.add(0.0 if number is None else number, *master)


def _plain(key: str, text: str, now: float) -> Iterator[Family]:
    """A field of the two tables, a `cluster_*` field, or one of the Server section's extras."""
    name = GAUGES.get(key)
    kind = "gauge"
    if name is None:
        name = COUNTERS.get(key)
        kind = "counter"
    if name is None:
        if key in ("hz", "configured_hz"):
            name, kind = key, "gauge"
        elif key.startswith("cluster_"):
            name, kind = _UNSAFE.sub("_", key), "gauge"
        else:
            thread = _IO_THREAD.fullmatch(key)
            number = None if thread is None else _value(text)
            if thread is not None and number is not None:
                family = Family(
                    _NS + "active_time_io_thread_seconds_total",
                    "counter",
                    "active_time_io_thread_seconds_total metric",
                    ("thread",),
                )
                family.add(number, thread[1])
                yield family
            return
    number = _value(text)
    if number is None:
        return
    if key == "latest_fork_usec":
        name, number = "latest_fork_seconds", number / 1e6
    elif key == "uptime_in_seconds":
        yield _single("start_time_seconds", "gauge", float(int(now) - number))
    yield _single(name, kind, number)


def _command(
    labelled: _Labelled, cmd: str, text: str, commands: dict[str, tuple[float, float]]
) -> None:
    fields = _pairs(text)
    calls, usec = _value(fields.get("calls", "")), _value(fields.get("usec", ""))
    if calls is None or usec is None:
        return
    commands[cmd] = (calls, usec)
    labels = ("cmd",)
    labelled.get("commands_total", "counter", "Total number of calls per command", labels).add(
        calls, cmd
    )
    labelled.get(
        "commands_duration_seconds_total",
        "counter",
        "Total amount of time in seconds spent per command",
        labels,
    ).add(usec / 1e6, cmd)
    rejected = _value(fields.get("rejected_calls", ""))
    failed = _value(fields.get("failed_calls", ""))
    if rejected is not None and failed is not None:  # Redis >= 6.2
        labelled.get(
            "commands_rejected_calls_total",
            "counter",
            "Total number of errors within command execution per command",
            labels,
        ).add(rejected, cmd)
        labelled.get(
            "commands_failed_calls_total",
            "counter",
            "Total number of errors prior command execution per command",
            labels,
        ).add(failed, cmd)


def _percentiles(cmd: str, text: str, out: dict[str, list[tuple[str, float]]]) -> None:
    """`p50=1.003,p99=1.003,p99.9=4.015` -> [("50", 1.003), ...] (redis_exporter's labels)."""
    values: list[tuple[str, float]] = []
    for name, number_text in _pairs(text).items():
        number = _value(number_text)
        quantile = _value(name[1:])
        if not name.startswith("p") or number is None or quantile is None:
            return
        values.append((_go_float(quantile), number))
    out[cmd] = values


def _go_float(number: float) -> str:
    """A quantile as client_golang writes it: 50, 99.9."""
    return str(int(number)) if number.is_integer() else repr(number)


def _percentile_summaries(
    percentiles: dict[str, list[tuple[str, float]]], commands: dict[str, tuple[float, float]]
) -> Iterator[Family]:
    if not percentiles:
        return
    summary = Family(
        _NS + "latency_percentiles_usec",
        "summary",
        "A summary of latency percentile distribution per command",
        ("cmd",),
    )
    for cmd, values in percentiles.items():
        totals = commands.get(cmd)
        if totals is None:
            continue
        for quantile, number in values:
            summary.add_sample("", summary.label_text((cmd,), f'quantile="{quantile}"'), number)
        labels = summary.label_text((cmd,))
        summary.add_sample("_sum", labels, totals[1])
        summary.add_sample("_count", labels, totals[0])
    yield summary


def _database(labelled: _Labelled, db: str, text: str) -> bool:
    fields = _pairs(text)
    keys, expires = _value(fields.get("keys", "")), _value(fields.get("expires", ""))
    if keys is None or expires is None:
        return False
    labels = ("db",)
    labelled.get("db_keys", "gauge", "Total number of keys by DB", labels).add(keys, db)
    labelled.get("db_keys_expiring", "gauge", "Total number of expiring keys by DB", labels).add(
        expires, db
    )
    cached = _value(fields.get("cached_keys", ""))
    if cached is not None:  # KeyDB
        labelled.get("db_keys_cached", "gauge", "Total number of cached keys by DB", labels).add(
            cached, db
        )
    ttl = _value(fields.get("avg_ttl", ""))
    if ttl is not None:
        labelled.get("db_avg_ttl_seconds", "gauge", "Avg TTL in seconds", labels).add(
            ttl / 1000, db
        )
    return True


def _empty_databases(labelled: _Labelled, scrape: RedisScrape, seen: set[str]) -> None:
    """db_keys and db_keys_expiring 0 for each database without keys, as redis_exporter."""
    if scrape.cluster_info is not None or scrape.info.get("cluster_enabled") == "1":
        count = 1  # a cluster node has one database
    else:
        count = int(_value(scrape.config.get("databases", "")) or DEFAULT_DATABASES)
    labels = ("db",)
    for i in range(min(count, MAX_DATABASES)):
        db = f"db{i}"
        if db not in seen:
            labelled.get("db_keys", "gauge", "Total number of keys by DB", labels).add(0.0, db)
            labelled.get(
                "db_keys_expiring", "gauge", "Total number of expiring keys by DB", labels
            ).add(0.0, db)


def _replica(labelled: _Labelled, text: str) -> None:
    """`slave0:ip=10.0.0.2,port=6379,state=online,offset=1751844676,lag=0` on a master."""
    fields = _pairs(text)
    offset = _value(fields.get("offset", ""))
    if offset is None:
        return
    labels = ("slave_ip", "slave_port", "slave_state")
    values = (fields.get("ip", ""), fields.get("port", ""), fields.get("state", ""))
    labelled.get("connected_slave_offset_bytes", "gauge", "Offset of connected slave", labels).add(
        offset, *values
    )
    lag = _value(fields.get("lag", ""))
    if lag is not None:
        labelled.get("connected_slave_lag_seconds", "gauge", "Lag of connected slave", labels).add(
            lag, *values
        )


def _module(labelled: _Labelled, text: str) -> None:
    """`module:name=search,ver=21005,api=1,filters=0,usedby=[],using=[],options=[]`."""
    fields = _pairs(text)
    labels = ("name", "ver", "api", "filters", "usedby", "using")
    labelled.get("module_info", "gauge", "Information about loaded Redis module", labels).add(
        1.0, *(fields.get(label, "") for label in labels)
    )


def _instance(info: Mapping[str, str]) -> Iterator[Family]:
    labels = list(INSTANCE_INFO_LABELS)
    labels += [extra for extra in ("valkey_version", "valkey_release_stage") if extra in info]
    family = Family(_NS + "instance_info", "gauge", "Information about the Redis instance", labels)
    family.add(1.0, *(info.get(label, "") for label in labels))
    yield family
    if info.get("role") == "slave":
        slave = Family(
            _NS + "slave_info",
            "gauge",
            "Information about the Redis slave",
            ("master_host", "master_port", "read_only"),
        )
        slave.add(
            1.0,
            info.get("master_host", ""),
            info.get("master_port", ""),
            info.get("slave_read_only", ""),
        )
        yield slave


def _cluster(cluster_info: Mapping[str, str] | None) -> Iterator[Family]:
    """CLUSTER INFO: cluster_state (ok 1), slots assigned/ok/pfail/fail, known nodes, size..."""
    if not cluster_info:
        return
    for key, text in cluster_info.items():
        name = GAUGES.get(key) or (_UNSAFE.sub("_", key) if key.startswith("cluster_") else None)
        number = None if name is None else _value(text)
        if name is not None and number is not None:
            yield _single(name, "gauge", number)


def _config(config: Mapping[str, str], info: Mapping[str, str]) -> Iterator[Family]:
    """CONFIG GET's settings; maxclients and maxmemory from INFO when it has them (fresher)."""
    for setting, name in CONFIG_GAUGES.items():
        text = info.get(setting) if setting in ("maxclients", "maxmemory") else None
        number = _value(text if text is not None else config.get(setting, ""))
        if number is not None:
            yield _single(name, "gauge", number)
    limits = config.get("client-output-buffer-limit")
    if not limits:
        return
    # "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    labels = ("class", "limit")
    size = Family(
        _NS + "config_client_output_buffer_limit_bytes",
        "gauge",
        "The configured buffer limits per class",
        labels,
    )
    seconds = Family(
        _NS + "config_client_output_buffer_limit_overcome_seconds",
        "gauge",
        "How long for buffer limits per class to be exceeded before replicas are dropped",
        labels,
    )
    words = limits.split()
    for i in range(0, len(words) - 3, 4):
        cls = words[i]
        hard, soft, overcome = (_value(w) for w in words[i + 1 : i + 4])
        if hard is not None:
            size.add(hard, cls, "hard")
        if soft is not None:
            size.add(soft, cls, "soft")
        if overcome is not None:
            seconds.add(overcome, cls, "soft")
    yield size
    yield seconds


def _slowlog(scrape: RedisScrape) -> Iterator[Family]:
    if scrape.slowlog_length is not None:
        yield _single("slowlog_length", "gauge", float(scrape.slowlog_length))
    if scrape.slowlog_last is not None:
        last_id, seconds = scrape.slowlog_last
        yield _single("slowlog_last_id", "gauge", float(last_id))
        yield _single("last_slow_execution_duration_seconds", "gauge", seconds)


def _latency(scrape: RedisScrape) -> Iterator[Family]:
    if not scrape.latency_latest:
        return
    labels = ("event_name",)
    last = Family(
        _NS + "latency_spike_last", "gauge", "When the latency spike last occurred", labels
    )
    duration = Family(
        _NS + "latency_spike_duration_seconds",
        "gauge",
        "Length of the last latency spike in seconds",
        labels,
    )
    for event, when, milliseconds in scrape.latency_latest:
        last.add(float(when), event)
        duration.add(milliseconds / 1e3, event)
    yield last
    yield duration


def _histograms(
    histograms: Mapping[str, LatencyHistogram], commands: dict[str, tuple[float, float]]
) -> Iterator[Family]:
    """redis_commands_latencies_usec{cmd}: LATENCY HISTOGRAM's buckets, cumulative."""
    family = Family(
        _NS + "commands_latencies_usec",
        "histogram",
        "A histogram of latencies per command",
        ("cmd",),
    )
    for cmd, histogram in histograms.items():
        cumulative = 0
        for bound, count in histogram.buckets:
            cumulative = max(cumulative, count)  # Redis sends the counts cumulative already
            family.add_sample(
                "_bucket", family.label_text((cmd,), f'le="{_go_float(bound)}"'), cumulative
            )
        labels = family.label_text((cmd,))
        family.add_sample("_bucket", family.label_text((cmd,), 'le="+Inf"'), float(histogram.calls))
        usec = sum(u for c, (_, u) in commands.items() if c == cmd or c.startswith(cmd + "|"))
        family.add_sample("_sum", labels, usec)
        family.add_sample("_count", labels, float(histogram.calls))
    yield family
