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
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from exporter.exposition import Chunk, Family, go_number

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
    "instantaneous_ops_per_sec": "instantaneous_ops_per_sec",  # ours (docs/reference.md)
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


_CMDSTAT = re.compile(
    r"calls=([0-9]+),usec=([0-9]+),usec_per_call=[^,]*"
    r"(?:,rejected_calls=([0-9]+),failed_calls=([0-9]+))?"
)
_PERCENTILE = re.compile(r"p([0-9.]+)=([^,]+)")
_NUMERIC_START = frozenset("-+.0123456789")
_TRUE_TEXT = {"ok": "1", "true": "1", "err": "0", "fail": "0", "false": "0"}
# The per-command families, (name, type, help), in the order of _Commands.lines.
_COMMAND_FAMILIES = (
    ("commands_total", "counter", "Total number of calls per command"),
    (
        "commands_duration_seconds_total",
        "counter",
        "Total amount of time in seconds spent per command",
    ),
    (
        "commands_rejected_calls_total",
        "counter",
        "Total number of errors within command execution per command",
    ),
    (
        "commands_failed_calls_total",
        "counter",
        "Total number of errors prior command execution per command",
    ),
)
_SPECIAL = frozenset(("latest_fork_usec", "uptime_in_seconds", "hz", "configured_hz"))
_OWN_RULES = ("cmdstat_", "latency_percentiles_usec_", "errorstat_", "cluster_", "db", "slave")
_UNSEEN = "unseen"
_prefixes: dict[str, str | None] = {}  # INFO field -> its family's header and sample name


def _ignored(key: str) -> bool:
    """A field no table, structure or rule takes: left out of every scrape."""
    return key != "master_link_status" and key not in _MASTER_FIELDS and key != "module"


def _number_text(text: str) -> str | None:
    """An INFO value as a sample value: its own text when that is a plain decimal number."""
    if text.isdigit():  # most are
        return text
    known = _TRUE_TEXT.get(text)
    if known is not None:
        return known
    try:
        value = float(text)
    except ValueError:
        return None
    if "_" in text or text[:1] not in _NUMERIC_START:  # inf, nan, 1_000: in Go's spelling
        return go_number(value)
    return text


def _plain_prefix(key: str) -> str | None:
    """`# HELP ...# TYPE ...redis_NAME ` for a field of the two tables, "" for a field that
    nothing is sent of, None for the others (a structure or a rule of their own)."""
    prefix = _prefixes.get(key, _UNSEEN)
    if prefix is not _UNSEEN:
        return prefix
    name = GAUGES.get(key)
    kind = "gauge"
    if name is None:
        name = COUNTERS.get(key)
        kind = "counter"
    if key in _SPECIAL:
        prefix = None
    elif name is not None:
        prefix = Family(_NS + name, kind, f"{name} metric").header() + f"{_NS}{name} "
    elif key.startswith(_OWN_RULES) or _IO_THREAD.fullmatch(key) or not _ignored(key):
        prefix = None
    else:
        prefix = ""
    if len(_prefixes) < len(GAUGES) + len(COUNTERS) + 4096:  # unknown fields: bounded
        _prefixes[key] = prefix
    return prefix


def _label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return value


class _Commands:
    """Commandstats and latencystats, written straight as text: they are most of a scrape."""

    def __init__(self) -> None:
        self.lines: tuple[list[str], ...] = ([], [], [], [])
        self.totals: dict[str, tuple[str, int]] = {}  # cmd -> (calls as text, µs)
        self.percentiles: dict[str, str] = {}  # cmd -> "p50=1.003,p99=1.003,p99.9=4.015"

    def command(self, cmd: str, text: str) -> None:
        match = _CMDSTAT.match(text)
        if match is None:
            return
        calls, usec, rejected, failed = match.groups()
        self.totals[cmd] = (calls, int(usec))
        cmd = _label(cmd)
        calls_lines, seconds_lines, rejected_lines, failed_lines = self.lines
        calls_lines.append(f'redis_commands_total{{cmd="{cmd}"}} {calls}\n')
        seconds = int(usec) / 1e6
        seconds_lines.append(f'redis_commands_duration_seconds_total{{cmd="{cmd}"}} {seconds!r}\n')
        if rejected is not None:  # Redis >= 6.2
            rejected_lines.append(
                f'redis_commands_rejected_calls_total{{cmd="{cmd}"}} {rejected}\n'
            )
            failed_lines.append(f'redis_commands_failed_calls_total{{cmd="{cmd}"}} {failed}\n')

    def chunks(self) -> Iterator[Chunk]:
        for (name, kind, doc), lines in zip(_COMMAND_FAMILIES, self.lines, strict=True):
            if lines:
                yield Chunk(Family(_NS + name, kind, doc).header() + "".join(lines))
        out: list[str] = []
        for cmd, text in self.percentiles.items():
            totals = self.totals.get(cmd)
            pairs = _PERCENTILE.findall(text)
            if totals is None or not pairs or any(_value(v) is None for _, v in pairs):
                continue
            label = _label(cmd)
            out += [
                f'redis_latency_percentiles_usec{{cmd="{label}",quantile="{q}"}} {v}\n'
                for q, v in pairs
            ]
            out.append(f'redis_latency_percentiles_usec_sum{{cmd="{label}"}} {totals[1]}\n')
            out.append(f'redis_latency_percentiles_usec_count{{cmd="{label}"}} {totals[0]}\n')
        if out:
            doc = "A summary of latency percentile distribution per command"
            family = Family(_NS + "latency_percentiles_usec", "summary", doc)
            yield Chunk(family.header() + "".join(out))


class _Fields:
    """What the loop over INFO's fields gathers for the families made after it."""

    def __init__(self, info: Mapping[str, str]) -> None:
        self.labelled = _Labelled()
        self.commands = _Commands()
        self.databases = _Databases()
        self.master = (info.get("master_host", ""), info.get("master_port", ""))

    def structured(self, key: str, text: str) -> bool:
        """Take a field with a structure (see the module's docstring); False for a plain one."""
        labelled = self.labelled
        if key.startswith("cmdstat_"):
            self.commands.command(key[8:], text)
        elif key.startswith("latency_percentiles_usec_"):
            self.commands.percentiles[key[25:]] = text
        elif key.startswith("errorstat_"):
            count = _value(_pairs(text).get("count", ""))
            if count is not None:
                labelled.get(
                    "errors_total", "counter", "Total number of errors per error type", ("err",)
                ).add(count, key[10:])
        elif key.startswith("db") and key[2:].isdigit():
            self.databases.add(key, text)
        elif _SLAVE.fullmatch(key):
            _replica(labelled, text)
        elif key == "master_link_status" or key in _MASTER_FIELDS:
            _master(labelled, key, text, self.master)
        elif key == "module":
            _module(labelled, text)
        else:
            return False
        return True


def info_families(scrape: RedisScrape, now: float) -> Iterator[Family | Chunk]:
    """Every family of one scrape, redis_exporter's plus our `redis_instantaneous_ops_per_sec`."""
    info = scrape.info
    fields = _Fields(info)
    plain: list[str] = []  # headers and samples of the fields of the two tables
    prefixes = _prefixes
    for key, text in info.items():
        prefix = prefixes.get(key, _UNSEEN)
        if prefix is _UNSEEN:
            prefix = _plain_prefix(key)
        if prefix is not None:
            if not prefix:  # a field nothing is sent of
                continue
            if text.isdigit():  # most are: the hot path, without a call
                plain.append(f"{prefix}{text}\n")
                continue
            number = _number_text(text)
            if number is not None:
                plain.append(f"{prefix}{number}\n")
        elif not fields.structured(key, text):
            yield from _special(key, text, now)
    yield Chunk("".join(plain))
    yield from fields.databases.chunks(scrape)
    yield from fields.labelled.families.values()
    yield from fields.commands.chunks()
    yield from _instance(info)
    yield from _cluster(scrape.cluster_info)
    yield from _config(scrape.config, info)
    yield from _slowlog(scrape)
    yield from _latency(scrape)
    if scrape.latency_histograms is not None:
        usec = {cmd: float(u) for cmd, (_, u) in fields.commands.totals.items()}
        yield from _histograms(scrape.latency_histograms, usec)


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


def _special(key: str, text: str, now: float) -> Iterator[Family]:
    """A field with a rule of its own, a `cluster_*` field, or one no table has (not sent)."""
    number = _value(text)
    if number is None:
        return
    if key == "latest_fork_usec":
        yield _single("latest_fork_seconds", "gauge", number / 1e6)
    elif key == "uptime_in_seconds":
        yield _single("uptime_in_seconds", "gauge", number)
        yield _single("start_time_seconds", "gauge", float(int(now) - number))
    elif key in ("hz", "configured_hz"):
        yield _single(key, "gauge", number)
    elif key.startswith("cluster_"):
        yield _single(_UNSAFE.sub("_", key), "gauge", number)
    else:
        thread = _IO_THREAD.fullmatch(key)
        if thread is not None:
            family = Family(
                _NS + "active_time_io_thread_seconds_total",
                "counter",
                "active_time_io_thread_seconds_total metric",
                ("thread",),
            )
            family.add(number, thread[1])
            yield family


def _go_float(number: float) -> str:
    """A number as client_golang writes it in a label: 50, 99.9."""
    return str(int(number)) if number.is_integer() else repr(number)


class _Databases:
    """INFO keyspace's `db0:keys=5,expires=1,avg_ttl=998062`, written straight as text."""

    FAMILIES = (
        ("db_keys", "Total number of keys by DB"),
        ("db_keys_expiring", "Total number of expiring keys by DB"),
        ("db_keys_cached", "Total number of cached keys by DB"),
        ("db_avg_ttl_seconds", "Avg TTL in seconds"),
    )

    def __init__(self) -> None:
        self.lines: tuple[list[str], ...] = ([], [], [], [])
        self.seen: set[str] = set()

    def add(self, db: str, text: str) -> bool:
        fields = _pairs(text)
        keys, expires = fields.get("keys", ""), fields.get("expires", "")
        if not keys.isdigit() or not expires.isdigit():
            return False
        self.seen.add(db)
        keys_lines, expiring_lines, cached_lines, ttl_lines = self.lines
        keys_lines.append(f'redis_db_keys{{db="{db}"}} {keys}\n')
        expiring_lines.append(f'redis_db_keys_expiring{{db="{db}"}} {expires}\n')
        cached = fields.get("cached_keys", "")
        if cached.isdigit():  # KeyDB
            cached_lines.append(f'redis_db_keys_cached{{db="{db}"}} {cached}\n')
        ttl = fields.get("avg_ttl", "")
        if ttl.isdigit():
            ttl_lines.append(f'redis_db_avg_ttl_seconds{{db="{db}"}} {int(ttl) / 1000!r}\n')
        return True

    def chunks(self, scrape: RedisScrape) -> Iterator[Chunk]:
        """The families, with db_keys and db_keys_expiring 0 for each empty database."""
        if scrape.cluster_info is not None or scrape.info.get("cluster_enabled") == "1":
            count = 1  # a cluster node has one database
        else:
            count = int(_value(scrape.config.get("databases", "")) or DEFAULT_DATABASES)
        for i in range(min(count, MAX_DATABASES)):
            db = f"db{i}"
            if db not in self.seen:
                self.lines[0].append(f'redis_db_keys{{db="{db}"}} 0\n')
                self.lines[1].append(f'redis_db_keys_expiring{{db="{db}"}} 0\n')
        for (name, doc), lines in zip(self.FAMILIES, self.lines, strict=True):
            if lines:
                yield Chunk(Family(_NS + name, "gauge", doc).header() + "".join(lines))


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
    histograms: Mapping[str, LatencyHistogram], usec: dict[str, float]
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
        total = sum(u for c, u in usec.items() if c == cmd or c.startswith(cmd + "|"))
        family.add_sample("_sum", labels, total)
        family.add_sample("_count", labels, float(histogram.calls))
    yield family
