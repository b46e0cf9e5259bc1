"""redis_exporter's families, read through /probe from real redis-servers (and from INFO texts
of Redis versions older than the one installed)."""

from __future__ import annotations

import logging
import time

import pytest
import yaml

from exporter.app import create_app
from exporter.exposition import render
from exporter.infometrics import info_families
from exporter.scrape import RedisScrape
from redis_autoheal.config import load_config
from redis_autoheal.redis_client import parse_info
from tests.exporter.redis_servers import redis_target
from tests.exporter.samples import parse_samples, value, values_with


def wait_until(check, what: str, seconds: float = 20.0):
    """Poll `check()` until it returns a true value (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.05)


@pytest.fixture
async def scrape_of(aiohttp_client, make_config):
    """scrape_of(*servers) -> an async get(name) of /probe for targets s0, s1, ..."""

    async def make(*servers, **redis_options):
        targets = [
            redis_target(f"s{i}", server, **redis_options) for i, server in enumerate(servers)
        ]
        client = await aiohttp_client(create_app(make_config(targets)))

        async def get(name: str = "s0", module: str = "performance"):
            response = await client.get("/probe", params={"target": name, "module": module})
            assert response.status == 200
            return parse_samples(await response.text())

        return get

    return make


async def test_keys_per_database_with_expiring_keys_and_average_ttl(scrape_of, redis_server):
    with redis_server.client(db=0) as c:
        c.mset({f"k{i}": i for i in range(5)})
        c.expire("k0", 1000)
        c.expire("k1", 2000)
        # Redis estimates the average TTL while it samples keys for expiry, a few times a second.
        wait_until(lambda: c.info("keyspace")["db0"]["avg_ttl"] > 0, "avg_ttl estimated")
    with redis_server.client(db=3) as c:
        c.set("only", 1)
    scrape = await scrape_of(redis_server)
    samples = await scrape()
    assert value(samples, "redis_db_keys", db="db0") == 5
    assert value(samples, "redis_db_keys_expiring", db="db0") == 2
    assert 900 < value(samples, "redis_db_avg_ttl_seconds", db="db0") <= 2000
    assert value(samples, "redis_db_keys", db="db3") == 1
    assert value(samples, "redis_db_keys_expiring", db="db3") == 0
    # Empty databases are sent as 0, up to `databases` (16): none beyond.
    assert value(samples, "redis_db_keys", db="db15") == 0
    assert value(samples, "redis_db_keys_expiring", db="db1") == 0
    assert len(values_with(samples, "redis_db_keys")) == 16
    assert ("redis_db_avg_ttl_seconds", (("db", "db1"),)) not in samples


async def test_keyspace_hits_and_misses_count_what_clients_read(scrape_of, redis_server):
    scrape = await scrape_of(redis_server)
    with redis_server.client() as c:
        c.set("present", 1)
        before = await scrape()
        for _ in range(3):
            c.get("present")
        c.get("absent")
        c.get("absent-too")
    after = await scrape()
    hits = value(after, "redis_keyspace_hits_total") - value(before, "redis_keyspace_hits_total")
    misses = value(after, "redis_keyspace_misses_total") - value(
        before, "redis_keyspace_misses_total"
    )
    assert (hits, misses) == (3, 2)


async def test_commands_calls_time_failures_and_errors_per_command(scrape_of, redis_server):
    scrape = await scrape_of(redis_server)
    with redis_server.client() as c:
        c.lpush("list", "x")
        for _ in range(4):
            c.get("k")
        with pytest.raises(Exception, match="WRONGTYPE"):
            c.get("list")  # fails while running: failed_calls
        with pytest.raises(Exception, match="wrong number"):
            c.execute_command("GET")  # refused before running: rejected_calls
        samples = await scrape()
        # redis-py's own CLIENT SETINFO on connecting, refused by Redis 7.0, counts as ERR too
        errors = c.info("errorstats")
    assert value(samples, "redis_commands_total", cmd="get") == 5
    assert value(samples, "redis_commands_failed_calls_total", cmd="get") == 1
    assert value(samples, "redis_commands_rejected_calls_total", cmd="get") == 1
    assert value(samples, "redis_commands_duration_seconds_total", cmd="get") > 0
    assert value(samples, "redis_errors_total", err="WRONGTYPE") == 1
    assert value(samples, "redis_errors_total", err="ERR") == errors["errorstat_ERR"]["count"]
    # Latency percentiles of Redis 7: a summary with redis_exporter's quantile labels.
    assert value(samples, "redis_latency_percentiles_usec", cmd="get", quantile="99.9") >= 0
    assert value(samples, "redis_latency_percentiles_usec_count", cmd="get") == 5


async def test_a_replica_and_its_master_report_the_link_offsets_and_lag(
    scrape_of, redis_server_factory
):
    master = redis_server_factory()
    replica = redis_server_factory("--replicaof", "127.0.0.1", str(master.port))
    with replica.client() as c:
        wait_until(lambda: c.info("replication")["master_link_status"] == "up", "replica in sync")
    with master.client() as c:
        c.set("replicated", 1)
        # The master learns the replica's offset from its next acknowledgement (every second).
        wait_until(lambda: c.info("replication")["slave0"]["offset"] > 0, "replica acknowledged")
    scrape = await scrape_of(master, replica)
    on_master, on_replica = await scrape("s0"), await scrape("s1")

    link = {"master_host": "127.0.0.1", "master_port": str(master.port)}
    assert value(on_replica, "redis_master_link_up", **link) == 1
    assert value(on_replica, "redis_master_sync_in_progress", **link) == 0
    assert value(on_replica, "redis_master_last_io_seconds_ago", **link) >= 0
    assert value(on_replica, "redis_slave_repl_offset", **link) > 0
    assert value(on_replica, "redis_slave_info", **link, read_only="1") == 1
    assert values_with(on_replica, "redis_instance_info", role="slave") == [1]

    follower = {"slave_ip": "127.0.0.1", "slave_port": str(replica.port), "slave_state": "online"}
    assert value(on_master, "redis_connected_slave_offset_bytes", **follower) > 0
    assert value(on_master, "redis_connected_slave_lag_seconds", **follower) >= 0
    assert value(on_master, "redis_connected_slaves") == 1
    assert value(on_master, "redis_master_repl_offset") > 0
    assert value(on_master, "redis_repl_backlog_is_active") == 1


async def test_instance_info_has_redis_exporters_labels(scrape_of, redis_server):
    samples = await (await scrape_of(redis_server))()
    (labels,) = [dict(pairs) for name, pairs in samples if name == "redis_instance_info"]
    with redis_server.client() as c:
        server = c.info("server")
    assert labels["redis_version"] == server["redis_version"]
    assert labels["run_id"] == server["run_id"]
    assert labels["tcp_port"] == str(redis_server.port)
    assert labels["redis_mode"] == "standalone"
    assert set(labels) >= {"role", "redis_build_id", "os", "maxmemory_policy", "process_id"}
    assert "master_replid" in labels


async def test_cpu_network_memory_and_start_time(scrape_of, redis_server):
    samples = await (await scrape_of(redis_server))()
    with redis_server.client() as c:
        cpu = c.info("cpu")  # a fresh server may not have a 10 ms tick of CPU yet
    assert 0 <= value(samples, "redis_cpu_user_seconds_total") <= cpu["used_cpu_user"]
    assert 0 <= value(samples, "redis_cpu_sys_seconds_total") <= cpu["used_cpu_sys"]
    assert value(samples, "redis_net_input_bytes_total") > 0
    assert value(samples, "redis_net_output_bytes_total") > 0
    assert value(samples, "redis_total_system_memory_bytes") > 0
    assert value(samples, "redis_memory_used_peak_bytes") > 0
    uptime = value(samples, "redis_uptime_in_seconds")
    assert abs(value(samples, "redis_start_time_seconds") - (time.time() - uptime)) < 5


async def test_config_settings_and_output_buffer_limits(scrape_of, redis_server):
    samples = await (await scrape_of(redis_server))()
    assert value(samples, "redis_config_io_threads") == 1
    assert value(samples, "redis_config_maxclients") == 10000
    assert value(samples, "redis_config_repl_backlog_size") > 0
    limit = "redis_config_client_output_buffer_limit_bytes"
    assert value(samples, limit, **{"class": "pubsub", "limit": "hard"}) == 32 * 1024 * 1024
    overcome = "redis_config_client_output_buffer_limit_overcome_seconds"
    assert value(samples, overcome, **{"class": "pubsub", "limit": "soft"}) == 60


async def test_slowlog_length_and_its_newest_entry(scrape_of, redis_server):
    scrape = await scrape_of(redis_server)
    samples = await scrape()
    assert value(samples, "redis_slowlog_length") == 0
    assert value(samples, "redis_last_slow_execution_duration_seconds") == 0
    with redis_server.client() as c:
        c.config_set("slowlog-log-slower-than", 0)
        c.set("slow", 1)
        newest = c.slowlog_get(1)[0]
    samples = await scrape()
    assert value(samples, "redis_slowlog_length") >= 1
    assert value(samples, "redis_slowlog_last_id") >= newest["id"]


async def test_commands_the_acl_user_may_not_run_leave_out_only_their_families(
    scrape_of, redis_server, tmp_path, caplog
):
    with redis_server.client() as c:
        c.acl_setuser(
            "probe", enabled=True, passwords=["+pw"], commands=["+ping", "+info", "+client|setname"]
        )
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "pw").chmod(0o600)
    caplog.set_level(logging.INFO, logger="exporter.scrape")
    scrape = await scrape_of(redis_server, username="probe", password_file=str(tmp_path / "pw"))
    for _ in range(2):
        samples = await scrape()
    assert value(samples, "redis_probe_success", layer="performance") == 1
    assert value(samples, "redis_db_keys", db="db0") == 0
    assert value(samples, "redis_config_maxclients") == 10000  # INFO has it (Redis >= 7)
    names = {name for name, _ in samples}
    assert not names & {"redis_slowlog_length", "redis_config_io_threads"}
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len([m for m in refused if "SLOWLOG LEN" in m]) == 1  # logged once, not per scrape


# INFO of a Redis 5.0 replica (no errorstats, latencystats, rejected/failed calls) with a module
# and one more replica of its own whose line predates `lag`.
REDIS_5_INFO = (
    "# Server\r\nredis_version:5.0.14\r\nredis_mode:standalone\r\nprocess_id:7\r\n"
    "uptime_in_seconds:100\r\nhz:10\r\nconfigured_hz:10\r\n"
    "# Memory\r\nused_memory:1000\r\nmaxmemory_policy:noeviction\r\n"
    "# Persistence\r\nrdb_last_bgsave_status:ok\r\naof_last_write_status:err\r\n"
    "# Stats\r\nlatest_fork_usec:2500\r\nkeyspace_hits:4\r\n"
    "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6380\r\n"
    "master_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\n"
    "master_sync_in_progress:0\r\nslave_repl_offset:42\r\nslave_read_only:1\r\n"
    "connected_slaves:1\r\nslave0:ip=10.0.0.3,port=6381,state=online,offset=40\r\n"
    "# CPU\r\nused_cpu_sys:1.5\r\nused_active_time_io_thread_1:2\r\n"
    "# Modules\r\nmodule:name=ReJSON,ver=20007,api=1,filters=0,usedby=[],using=[],options=[]\r\n"
    "# Commandstats\r\ncmdstat_get:calls=21,usec=175,usec_per_call=8.33\r\n"
    "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\ndb2:keys=3,expires=1\r\n"
)


class _Src:
    """The families of one scrape made by hand, as a collector for render."""

    def __init__(self, scrape: RedisScrape) -> None:
        self.scrape = scrape

    def collect(self):
        return info_families(self.scrape, now=1000.0)


def test_a_redis_5_replica_gets_the_families_its_info_allows():
    samples = parse_samples(render(_Src(RedisScrape(info=parse_info(REDIS_5_INFO)))).decode())
    assert value(samples, "redis_commands_total", cmd="get") == 21
    assert value(samples, "redis_commands_duration_seconds_total", cmd="get") == 175e-6
    names = {name for name, _ in samples}
    assert "redis_commands_rejected_calls_total" not in names  # Redis < 6.2 has no such field
    assert "redis_latency_percentiles_usec_count" not in names  # nor latency percentiles
    link = {"master_host": "10.0.0.1", "master_port": "6380"}
    assert value(samples, "redis_master_link_up", **link) == 0
    assert value(samples, "redis_master_last_io_seconds_ago", **link) == -1
    assert value(samples, "redis_slave_repl_offset", **link) == 42
    replica = {"slave_ip": "10.0.0.3", "slave_port": "6381", "slave_state": "online"}
    assert value(samples, "redis_connected_slave_offset_bytes", **replica) == 40
    assert "redis_connected_slave_lag_seconds" not in names  # no lag= before Redis 3
    assert value(samples, "redis_db_keys", db="db2") == 3
    assert ("redis_db_avg_ttl_seconds", (("db", "db2"),)) not in samples
    assert value(samples, "redis_latest_fork_seconds") == 0.0025
    assert value(samples, "redis_start_time_seconds") == 900
    assert value(samples, "redis_rdb_last_bgsave_status") == 1
    assert value(samples, "redis_aof_last_write_status") == 0
    assert value(samples, "redis_active_time_io_thread_seconds_total", thread="1") == 2
    module = {"name": "ReJSON", "ver": "20007", "api": "1", "filters": "0"}
    assert values_with(samples, "redis_module_info", **module, usedby="[]", using="[]") == [1]
    assert value(samples, "redis_hz") == 10


def test_a_cluster_node_sends_one_database_and_cluster_info():
    info = parse_info("# Cluster\r\ncluster_enabled:1\r\n# Keyspace\r\n")
    cluster = parse_info(
        "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10000\r\n"
        "cluster_slots_pfail:6384\r\ncluster_slots_fail:0\r\ncluster_known_nodes:3\r\n"
        "cluster_size:3\r\ncluster_stats_messages_sent:99\r\n"
    )
    samples = parse_samples(render(_Src(RedisScrape(info=info, cluster_info=cluster))).decode())
    assert value(samples, "redis_cluster_enabled") == 1
    assert value(samples, "redis_cluster_state") == 0
    assert value(samples, "redis_cluster_slots_pfail") == 6384
    assert value(samples, "redis_cluster_messages_sent_total") == 99
    assert values_with(samples, "redis_db_keys") == [0]  # db0 only


def test_cardinality_is_bounded_by_commands_and_databases():
    commands = "".join(
        f"cmdstat_c{i}:calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n"
        f"latency_percentiles_usec_c{i}:p50=1.003,p99=2.007,p99.9=2.007\r\n"
        for i in range(200)
    )
    keyspace = "".join(f"db{i}:keys=1,expires=1,avg_ttl=5\r\n" for i in range(16))
    info = parse_info(commands + keyspace)
    text = render(_Src(RedisScrape(info=info, config={"databases": "16"}))).decode()
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    # per command: calls, time, rejected, failed, 3 quantiles, _sum, _count; per db: 3
    assert len(series) == 200 * 9 + 16 * 3 + 1  # + redis_instance_info


async def test_latency_histograms_when_the_config_asks_for_them(
    aiohttp_client, tmp_path, redis_server
):
    data = {
        "targets": [redis_target("s0", redis_server)],
        "exporter": {"latency_histograms": True},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    client = await aiohttp_client(create_app(load_config(path)))
    with redis_server.client() as c:
        for _ in range(7):
            c.get("k")
    response = await client.get("/probe", params={"target": "s0", "module": "performance"})
    samples = parse_samples(await response.text())
    assert value(samples, "redis_commands_latencies_usec_count", cmd="get") == 7
    assert value(samples, "redis_commands_latencies_usec_bucket", cmd="get", le="+Inf") == 7
    buckets = [
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == "redis_commands_latencies_usec_bucket" and dict(labels)["cmd"] == "get"
    ]
    counts = [v for _, v in sorted(buckets)]
    assert counts == sorted(counts)  # cumulative
    assert value(samples, "redis_commands_latencies_usec_sum", cmd="get") == value(
        samples, "redis_latency_percentiles_usec_sum", cmd="get"
    )


async def test_no_latency_histograms_by_default(scrape_of, redis_server):
    samples = await (await scrape_of(redis_server))()
    assert not any(name.startswith("redis_commands_latencies_usec") for name, _ in samples)
