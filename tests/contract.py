"""The public metric names of docs/reference.md, in one place for every test that needs them.

tests/dashboards checks this copy against docs/reference.md.
"""

from __future__ import annotations

PROBE_ALL = frozenset({"redis_probe_success", "redis_probe_duration_seconds"})
CONNECTIVITY = frozenset({"redis_up", "redis_ping_latency_seconds"})
SYSTEMD = frozenset({"redis_ssh_up", "redis_systemd_unit_state", "redis_systemd_unit_followed"})
PERFORMANCE = frozenset(
    {
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_connected_clients",
        "redis_config_maxclients",
        "redis_instantaneous_ops_per_sec",
        "redis_uptime_in_seconds",
        "redis_rejected_connections_total",
        "redis_rdb_last_save_timestamp_seconds",
        "redis_rdb_last_bgsave_status",
        "redis_rdb_changes_since_last_save",
        "redis_aof_enabled",
        "redis_instance_info",
    }
)
REMEDIATOR = frozenset(
    {
        "autoheal_recoveries_total",
        "autoheal_recovery_duration_seconds",
        "autoheal_circuit_breaker_open",
        "autoheal_recovery_exhausted_total",
        "autoheal_operations_total",
        "autoheal_ssh_commands_total",
        "autoheal_webhook_requests_total",
        "autoheal_security_violations_total",
        "autoheal_audit_write_errors_total",
        "autoheal_coordination_up",
    }
)
REMEDIATOR_HISTOGRAMS = frozenset({"autoheal_recovery_duration_seconds"})
# The exporter's own, on its /metrics (issue 11: config reload).
EXPORTER = frozenset({"redis_autoheal_exporter_config_last_reload_successful"})
ALL = PROBE_ALL | CONNECTIVITY | SYSTEMD | PERFORMANCE | REMEDIATOR | EXPORTER
