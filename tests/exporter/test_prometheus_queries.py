"""A redis_exporter user's scrape job, dashboard queries and alert rules, unchanged but for the
exporter's address, on a real Prometheus scraping ours: every query returns data and every
rule loads and evaluates."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse

import pytest
import yaml

from tests.alerts.local_servers import daemon, get_json, wait_until
from tests.alerts.local_servers import prometheus as local_prometheus
from tests.support import free_port, require_binary

# A redis_exporter dashboard's panels, in its vocabulary (names, labels, units).
DASHBOARD_QUERIES = [
    "redis_up",
    "redis_uptime_in_seconds",
    "max by (instance) (redis_instance_info{role='master'})",
    "redis_connected_clients",
    "redis_blocked_clients",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_mem_fragmentation_ratio",
    "redis_total_system_memory_bytes",
    "rate(redis_commands_processed_total[30s])",
    "sum by (instance) (irate(redis_net_input_bytes_total[30s]))",
    "sum by (instance) (irate(redis_net_output_bytes_total[30s]))",
    "rate(redis_cpu_sys_seconds_total[30s]) + rate(redis_cpu_user_seconds_total[30s])",
    "redis_keyspace_hits_total / (redis_keyspace_hits_total + redis_keyspace_misses_total)",
    "sum by (db) (redis_db_keys)",
    "sum by (db) (redis_db_keys_expiring)",
    "redis_db_avg_ttl_seconds",
    "rate(redis_expired_keys_total[30s])",
    "rate(redis_evicted_keys_total[30s])",
    "topk(5, irate(redis_commands_total[30s]))",
    "sum by (cmd) (irate(redis_commands_duration_seconds_total[30s]))",
    "redis_commands_failed_calls_total",
    "redis_errors_total",
    "redis_latency_percentiles_usec{quantile='99'}",
    "redis_connected_slaves",
    "redis_master_link_up",
    "redis_connected_slave_lag_seconds",
    "redis_connected_slave_offset_bytes",
    "redis_master_repl_offset",
    "time() - redis_rdb_last_save_timestamp_seconds",
    "redis_rdb_changes_since_last_save",
    "redis_aof_enabled",
    "redis_slowlog_length",
    "redis_config_maxclients",
]
# Alert rules as a redis_exporter user writes them: (name, the query, its threshold).
RULES = [
    ("RedisDown", "redis_up", "== 0"),
    ("RedisMissingMaster", "count(redis_instance_info{role='master'})", "< 1"),
    ("RedisTooManyMasters", "count(redis_instance_info{role='master'})", "> 1"),
    (
        "RedisDisconnectedSlaves",
        (
            "count without (instance, job) (redis_connected_slaves)"
            " - sum without (instance, job) (redis_connected_slaves)"
        ),
        "> 1",
    ),
    ("RedisReplicationBroken", "delta(redis_connected_slaves[1m])", "< 0"),
    ("RedisReplicaLinkDown", "redis_master_link_up", "== 0"),
    ("RedisTooManyConnections", "redis_connected_clients / redis_config_maxclients", "> 0.9"),
    ("RedisRejectedConnections", "increase(redis_rejected_connections_total[1m])", "> 0"),
    ("RedisMissingBackup", "time() - redis_rdb_last_save_timestamp_seconds", "> 86400"),
    ("RedisHighKeyspaceMisses", "rate(redis_keyspace_misses_total[1m])", "> 1000"),
]


@pytest.fixture
def redis_pair(redis_server_factory):
    """A master with keys in two databases (some expiring), reads that hit and miss; a replica."""
    master = redis_server_factory()
    for db in (0, 2):
        with master.client(db=db) as c:
            c.mset({f"k{i}": i for i in range(10)})
            c.expire("k1", 3600)
            c.get("k2")
            c.get("nope")
    replica = redis_server_factory("--replicaof", "127.0.0.1", str(master.port))
    return master, replica


@pytest.fixture
def our_exporter(tmp_path, redis_pair):
    """Our exporter process, its allowlist admitting loopback: its address."""
    port = free_port()
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [{"name": "unused"}],
                "exporter": {"allowed_targets": {"networks": ["127.0.0.0/8"]}},
            }
        )
    )
    argv = [sys.executable, "-m", "exporter", "--config", str(config)]
    argv += ["--listen", f"127.0.0.1:{port}"]
    with daemon(argv, f"http://127.0.0.1:{port}/healthz", tmp_path / "exporter.log"):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def prometheus(tmp_path, our_exporter, redis_pair):
    binary = require_binary("prometheus")
    master, replica = redis_pair
    targets = [f"redis://127.0.0.1:{master.port}", f"redis://127.0.0.1:{replica.port}"]
    # The multi-target job of redis_exporter's README, its exporter address made ours.
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {
                "job_name": "redis_exporter_targets",
                "static_configs": [{"targets": targets}],
                "metrics_path": "/scrape",
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": our_exporter},
                ],
            }
        ],
    }
    rules = {
        "groups": [
            {
                "name": "redis",
                "rules": [
                    {"alert": name, "expr": f"{query} {threshold}", "for": "1m"}
                    for name, query, threshold in RULES
                ],
            }
        ]
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    subprocess.run(
        [require_binary("promtool"), "check", "rules", str(tmp_path / "rules.yml")],
        check=True,
        capture_output=True,
    )
    with local_prometheus(binary, tmp_path) as url:
        yield url


def query(url: str, expr: str) -> list:
    answer = get_json(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_every_dashboard_query_and_alert_rule_returns_data(prometheus):
    def scraped_enough() -> bool:
        targets = get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
        healthy = len(targets) == 2 and all(t["health"] == "up" for t in targets)
        # rate() needs two samples in its window: wait for the fifth scrape of each target.
        count = query(prometheus, "count_over_time(redis_up[30s])")
        return healthy and len(count) == 2 and all(float(r["value"][1]) >= 5 for r in count)

    wait_until(scraped_enough, 60, "five scrapes of both targets")
    empty = [expr for expr in DASHBOARD_QUERIES if not query(prometheus, expr)]
    empty += [q for _, q, _ in RULES if not query(prometheus, q)]
    assert empty == [], "these return no data"
    up = {r["metric"]["instance"]: r["value"][1] for r in query(prometheus, "redis_up")}
    assert set(up.values()) == {"1"}
    assert len(up) == 2

    def evaluated() -> bool:
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return len(rules) == len(RULES) and all(r["health"] == "ok" for r in rules)

    wait_until(evaluated, 30, "every rule evaluated without error")
    firing = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    assert [a["labels"]["alertname"] for a in firing] == []  # a healthy pair: nothing fires
