"""alerts/sharding/prometheus-shard.yml on real Prometheus servers: two shards made from it take
disjoint sets of the service-discovery targets whose union is every target."""

from __future__ import annotations

import contextlib
import urllib.parse

import pytest
import yaml

from tests.alerts.local_servers import get_json, prometheus, wait_until
from tests.alerts.paths import ALERTS
from tests.support import free_port, require_binary

SHARDS = 2
TARGETS = [f"redis://10.9.{i // 200}.{i % 200 + 1}:6379" for i in range(300)] + [
    f"rediss://cache-{i}.redis.internal:6380" for i in range(60)
]


def shard_config(number: int, exporter: str, targets_file: str) -> dict:
    """The shipped shard file made into shard `number` of SHARDS, as its comments say."""
    config = yaml.safe_load((ALERTS / "sharding" / "prometheus-shard.yml").read_text())
    config["global"]["external_labels"]["shard"] = str(number)
    (job,) = config["scrape_configs"]
    job["file_sd_configs"] = [{"files": [targets_file]}]
    for relabel in job["relabel_configs"]:
        if relabel.get("action") == "hashmod":
            relabel["modulus"] = SHARDS
        if relabel.get("action") == "keep":
            relabel["regex"] = str(number)
        if relabel.get("target_label") == "__address__":
            relabel["replacement"] = exporter  # a closed loopback port: nothing is scraped
    return config


@pytest.fixture
def shards(tmp_path):
    binary = require_binary("prometheus")
    targets_file = tmp_path / "targets.yml"
    targets_file.write_text(yaml.safe_dump([{"targets": TARGETS}]))
    exporter = f"127.0.0.1:{free_port()}"
    urls = []
    with contextlib.ExitStack() as stack:
        for number in range(SHARDS):
            directory = tmp_path / f"shard-{number}"
            directory.mkdir()
            (directory / "prometheus.yml").write_text(
                yaml.safe_dump(shard_config(number, exporter, str(targets_file)))
            )
            urls.append(stack.enter_context(prometheus(binary, directory)))
        yield urls, exporter


def test_two_shards_take_disjoint_sets_covering_every_target(shards):
    urls, exporter = shards

    def active(url: str) -> list[dict]:
        return get_json(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]

    def dropped(url: str) -> list[dict]:
        return get_json(f"{url}/api/v1/targets?state=dropped")["data"]["droppedTargets"]

    wait_until(
        lambda: all(len(active(u)) + len(dropped(u)) == len(TARGETS) for u in urls),
        30,
        "every shard to have discovered every target",
    )
    taken = []
    for url in urls:
        targets = active(url)
        instances = {t["labels"]["instance"] for t in targets}
        assert len(instances) == len(targets)
        for t in targets:  # scraped the redis_exporter way, at this shard's exporter
            scrape = urllib.parse.urlsplit(t["scrapeUrl"])
            assert (scrape.netloc, scrape.path) == (exporter, "/scrape")
            assert urllib.parse.parse_qs(scrape.query) == {"target": [t["labels"]["instance"]]}
        taken.append(instances)
    assert taken[0].isdisjoint(taken[1])
    assert taken[0] | taken[1] == set(TARGETS)
    assert all(len(t) > len(TARGETS) / 4 for t in taken)  # hashmod spreads them
