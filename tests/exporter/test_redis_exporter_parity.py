"""Side by side with Debian's prometheus-redis-exporter on the same redis-servers: every family
it sends, ours sends too, with the same type and label names (ours may add labels to
`redis_instance_info` only). The exceptions are listed, each with why."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request

import pytest
from prometheus_client import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.infometrics import COUNTERS, GAUGES
from tests.exporter.redis_servers import RedisServer, redis_target
from tests.exporter.test_infometrics import wait_until
from tests.support import missing, require_binary

# Families Debian's redis_exporter (1.45) sends that ours does not, and why.
NOT_SENT = {
    # Key groups are its --check-key-groups feature (not built here); without the flag it
    # sends this constant 0, which current redis_exporter no longer does.
    "redis_last_key_groups_scrape_duration_milliseconds",
}
# Families whose type differs, and why: 1.45 had this one in its gauge table; current
# redis_exporter (and ours) make it a counter, which is what the INFO field is.
OTHER_TYPE = {"redis_expired_time_cap_reached_total": ("gauge", "counter")}
# Labels ours adds: current redis_exporter's instance_info also has master_replid.
MORE_LABELS = {"redis_instance_info": {"master_replid"}}

Shape = dict[str, tuple[str, set[frozenset[str]]]]  # family -> (type, label-name sets)


def families(text: str) -> dict[str, Metric]:
    """The families of a page by the name in their TYPE line (the parser drops `_total`)."""
    exposed = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            exposed[name.removesuffix("_total") if name.endswith("_total") else name] = name
    return {exposed.get(f.name, f.name): f for f in text_string_to_metric_families(text)}


def shape(text: str) -> Shape:
    out: Shape = {}
    for name, family in families(text).items():
        labels = {frozenset(s.labels) - {"quantile", "le"} for s in family.samples}
        out[name] = (family.type, labels)
    return out


def scrape_theirs(url: str, server: RedisServer) -> str:
    with urllib.request.urlopen(
        f"{url}/scrape?target=redis://127.0.0.1:{server.port}", timeout=10
    ) as response:
        return response.read().decode()


@pytest.fixture
def master_and_replica(redis_server_factory) -> tuple[RedisServer, RedisServer]:
    """A master with keys in three databases, some expiring, hits and misses; its replica."""
    master = redis_server_factory()
    for db in (0, 1, 3):
        with master.client(db=db) as c:
            c.mset({f"k{i}": i for i in range(5)})
            c.expire("k1", 1000)
            c.get("k2")
            c.get("absent")
            wait_until(lambda c=c, db=db: c.info("keyspace")[f"db{db}"]["avg_ttl"] > 0, "avg_ttl")
    with master.client() as c, pytest.raises(Exception, match="unknown command"):
        c.execute_command("NOSUCHCOMMAND")  # an errorstat
    replica = redis_server_factory("--replicaof", "127.0.0.1", str(master.port))
    with master.client() as c:
        wait_until(lambda: c.info("replication").get("slave0", {}).get("offset", 0) > 0, "ack")
    return master, replica


async def test_every_family_of_redis_exporter_is_ours_too(
    aiohttp_client, make_config, redis_exporter, master_and_replica
):
    master, replica = master_and_replica
    config = make_config([redis_target("master", master), redis_target("replica", replica)])
    client = await aiohttp_client(create_app(config))
    for name, server in (("master", master), ("replica", replica)):
        theirs = shape(scrape_theirs(redis_exporter, server))
        response = await client.get("/probe", params={"target": name})
        assert response.status == 200
        ours = shape(await response.text())
        missing = sorted(theirs.keys() - ours.keys() - NOT_SENT)
        assert missing == [], f"{name}: redis_exporter sends these, we do not"
        for family, (kind, label_sets) in theirs.items():
            if family in NOT_SENT:
                continue
            our_kind, our_label_sets = ours[family]
            assert (kind, our_kind) == OTHER_TYPE.get(family, (kind, kind)), family
            extra = MORE_LABELS.get(family, set())
            assert {labels - extra for labels in our_label_sets} == label_sets, family


async def test_the_same_series_for_keys_commands_and_replicas(
    aiohttp_client, make_config, redis_exporter, master_and_replica
):
    """Not only the names: the same label values (databases, commands seen, replicas)."""
    master, _ = master_and_replica
    config = make_config([redis_target("master", master)])
    client = await aiohttp_client(create_app(config))
    theirs = scrape_theirs(redis_exporter, master)
    ours = await (await client.get("/probe", params={"target": "master"})).text()

    def series(text: str, family: str, label: str) -> set[str]:
        f = families(text).get(family)
        return set() if f is None else {s.labels[label] for s in f.samples}

    for family, label in (
        ("redis_db_keys", "db"),
        ("redis_db_avg_ttl_seconds", "db"),
        ("redis_errors_total", "err"),
        ("redis_connected_slave_offset_bytes", "slave_port"),
    ):
        assert series(ours, family, label) == series(theirs, family, label), family
    # redis_exporter scraped first: every command it saw, ours sees too (and its own).
    their_commands = series(theirs, "redis_commands_total", "cmd")
    assert their_commands >= {"mset", "expire", "get", "replconf", "psync"}
    assert their_commands <= series(ours, "redis_commands_total", "cmd")


async def test_promtool_remarks_only_on_redis_exporters_own_names(
    aiohttp_client, make_config, redis_exporter, master_and_replica
):
    """`promtool check metrics` on /probe: whatever it remarks on is a name redis_exporter uses
    (kept for its users), never one of ours."""
    promtool = require_binary("promtool")
    master, _ = master_and_replica
    client = await aiohttp_client(create_app(make_config([redis_target("master", master)])))
    ours = await (await client.get("/probe", params={"target": "master"})).text()
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=ours.encode(),
        capture_output=True,
        check=False,
    )
    remarks = [line for line in checked.stderr.decode().splitlines() if line.strip()]
    assert checked.returncode == 3  # lint remarks; 1 would be text promtool cannot parse
    theirs = set(families(scrape_theirs(redis_exporter, master)))
    theirs |= {f"redis_{name}" for name in (*GAUGES.values(), *COUNTERS.values())}
    assert remarks  # redis_exporter's own names do draw remarks: the check ran
    assert [r for r in remarks if r.split()[0] not in theirs] == []


# On an idle Redis 7.0, scraped by both: the series ours sends beyond 1.45's, counted per sample
# name. Each is a family current redis_exporter sends by default that 1.45 (October 2022)
# predates, with the release that added it to its tables:
SINCE_1_45 = {
    # Redis 7.0's INFO fields: 1.58 (rdb_*), 1.64 (the others), 1.68 (max_clients)
    **dict.fromkeys(
        (
            "redis_async_loading",
            "redis_current_eviction_exceeded_time_ms",
            "redis_evicted_clients_total",
            "redis_eviction_exceeded_time_ms_total",
            "redis_expire_cycle_cpu_time_ms_total",
            "redis_lazyfreed_objects",
            "redis_max_clients",
            "redis_mem_aof_buffer_bytes",
            "redis_mem_cluster_links_bytes",
            "redis_mem_replication_backlog_bytes",
            "redis_mem_total_replication_buffers_bytes",
            "redis_memory_used_functions_bytes",
            "redis_memory_used_scripts_eval_bytes",
            "redis_memory_used_vm_eval_bytes",
            "redis_memory_used_vm_functions_bytes",
            "redis_memory_used_vm_total",
            "redis_net_repl_input_bytes_total",
            "redis_net_repl_output_bytes_total",
            "redis_number_of_functions",
            "redis_number_of_libraries",
            "redis_pubsubshard_channels",
            "redis_rdb_last_load_expired_keys",
            "redis_rdb_last_load_loaded_keys",
            "redis_rdb_saves_total",
            "redis_reply_buffer_expands_total",
            "redis_reply_buffer_shrinks_total",
            "redis_hz",  # 1.64
            "redis_configured_hz",  # 1.64
            "redis_config_repl_backlog_size",  # 1.84
        ),
        1,
    ),
    # 1.63: CONFIG GET client-output-buffer-limit, hard and soft bytes and seconds of 3 classes
    "redis_config_client_output_buffer_limit_bytes": 6,
    "redis_config_client_output_buffer_limit_overcome_seconds": 3,
}
# Its --include-system-metrics family, always ours (issue 11 asks for total system memory).
FLAGGED = {"redis_total_system_memory_bytes": 1}
# Ours (docs/reference.md). `all` on a target without an `ssh` section also reports its systemd
# layer as failed (ssh_not_configured); a URL target (/scrape?target=redis://...) has none.
OURS = {
    "performance": {
        "redis_instantaneous_ops_per_sec": 1,
        "redis_probe_success": 1,
        "redis_probe_duration_seconds": 1,
    },
    "all": {
        "redis_instantaneous_ops_per_sec": 1,
        "redis_probe_success": 3,
        "redis_probe_duration_seconds": 3,
        "redis_probe_error": 1,
        "redis_ping_latency_seconds": 1,
        "redis_ssh_up": 1,
    },
}
# 1.45's series ours does not send: the key groups' constant (NOT_SENT), and redis_up, which is
# the connectivity layer's (not in module=performance). (Its redis_exporter_build_info is a
# third, left out here by -redis-only-metrics.)
THEIRS_ONLY = {"redis_last_key_groups_scrape_duration_milliseconds": 1}


def series_per_name(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


async def test_on_an_idle_redis_ours_sends_1_45s_series_and_the_listed_ones(
    aiohttp_client, make_config, redis_exporter, redis_server
):
    """Every series 1.45 sends (its own apart), and beyond them only the families listed above:
    no per-command or per-database series more, so a busy Redis adds the same to both (README,
    "Cardinality")."""
    with redis_server.client() as c:
        version = c.info("server")["redis_version"]
    if not version.startswith("7.0."):
        missing(f"the lists are Redis 7.0's INFO fields (Debian 12's); this is {version}")
    client = await aiohttp_client(create_app(make_config([redis_target("idle", redis_server)])))
    for _ in range(2):  # the second round's commandstats has both exporters' commands
        pages = {}
        for module in ("performance", "all"):
            response = await client.get("/probe", params={"target": "idle", "module": module})
            pages[module] = await response.text()
        theirs = series_per_name(scrape_theirs(redis_exporter, redis_server))
    for module, page in pages.items():
        ours = series_per_name(page)
        more = {n: k - theirs.get(n, 0) for n, k in ours.items() if k > theirs.get(n, 0)}
        fewer = {n: k - ours.get(n, 0) for n, k in theirs.items() if k > ours.get(n, 0)}
        assert more == SINCE_1_45 | FLAGGED | OURS[module], module
        up = {"redis_up": 1} if module == "performance" else {}
        assert fewer == THEIRS_ONLY | up, module
