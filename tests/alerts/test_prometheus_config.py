"""alerts/prometheus.yml: valid, the runbook's probe schedule, blackbox-style relabelling (checked
on a real Prometheus, on loopback), and in step with thresholds.yml and the promtool tests."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse

import pytest
import yaml

from alerts.generator.scenarios import EVAL
from redis_autoheal.thresholds import parse_duration
from tests.alerts.local_servers import get_json, wait_until
from tests.alerts.local_servers import prometheus as local_prometheus
from tests.alerts.paths import ALERTS, ROOT
from tests.support import free_port, require_binary

# job: (module, scrape interval, timeout), from the runbook's Health Monitoring.
PROBES = {
    "redis-connectivity": ("connectivity", "30s", "5s"),
    "redis-systemd": ("systemd", "60s", "10s"),
    "redis-performance": ("performance", "120s", "15s"),
}
EXPORTER = "127.0.0.1:9121"


def _jobs(config: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_promtool_check_config_as_shipped(promtool):
    # From the repository root, as the README says: the rule and target files resolve
    # relative to the config file.
    result = subprocess.run(
        [promtool, "check", "config", "alerts/prometheus.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
    assert "redis-autoheal.rules.yml" in result.stdout


def test_probe_jobs_follow_the_runbook_schedule(prom_config):
    jobs = _jobs(prom_config)
    for name, (module, interval, timeout) in PROBES.items():
        job = jobs[name]
        assert job["metrics_path"] == "/probe"
        assert job["params"] == {"module": [module]}
        assert job["scrape_interval"] == interval
        assert job["scrape_timeout"] == timeout
        assert job["file_sd_configs"] == [{"files": ["targets/*.yml"]}]


def test_probe_jobs_relabel_the_blackbox_way(prom_config):
    for name in PROBES:
        assert _jobs(prom_config)[name]["relabel_configs"] == [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": EXPORTER},
        ]


def test_own_metrics_rules_and_alertmanager(prom_config):
    jobs = _jobs(prom_config)
    assert jobs["redis-autoheal-exporter"]["static_configs"] == [{"targets": [EXPORTER]}]
    assert jobs["redis-autoheal-remediator"]["static_configs"] == [{"targets": ["127.0.0.1:9122"]}]
    assert prom_config["rule_files"] == ["rules/*.yml"]
    (alertmanagers,) = prom_config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]


def test_example_targets_file_names_the_target_redis():
    assert yaml.safe_load((ALERTS / "targets" / "redis.yml").read_text()) == [
        {"targets": ["redis"]}
    ]


def test_thresholds_know_the_scrape_intervals(prom_config, thresholds):
    # RedisDown and RedisSshUnreachable count samples at these intervals.
    jobs = _jobs(prom_config)
    for layer, seconds in thresholds.intervals.items():
        job = jobs[f"redis-{layer}" if layer != "remediator" else "redis-autoheal-remediator"]
        interval = job.get("scrape_interval", prom_config["global"]["scrape_interval"])
        assert parse_duration(interval, layer) == seconds, layer


def test_promtool_tests_evaluate_as_often_as_prometheus(prom_config):
    assert parse_duration(prom_config["global"]["evaluation_interval"], "global") == EVAL
    for path in (ALERTS / "tests").glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        assert parse_duration(doc["evaluation_interval"], path.name) == EVAL


@pytest.fixture
def prometheus(tmp_path):
    """A Prometheus on loopback running the shipped config, its exporter address made a closed
    port so that nothing is scraped; the relabelling under test is otherwise unchanged."""
    binary = require_binary("prometheus")
    exporter = f"127.0.0.1:{free_port()}"
    closed = f"127.0.0.1:{free_port()}"
    config = yaml.safe_load((ALERTS / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for relabel in job.get("relabel_configs", []):
            if relabel.get("replacement") == EXPORTER:
                relabel["replacement"] = exporter
        for static in job.get("static_configs", []):
            static["targets"] = [closed]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [closed]}]
    for directory in ("rules", "targets"):
        shutil.copytree(ALERTS / directory, tmp_path / directory)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with local_prometheus(binary, tmp_path) as url:
        yield url, exporter


def test_prometheus_probes_each_target_by_name(prometheus):
    url, exporter = prometheus

    def probe_targets() -> dict[str, dict]:
        active = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
        found = {t["labels"]["job"]: t for t in active if t["labels"]["job"] in PROBES}
        assert len(found) == len(PROBES)
        return found

    wait_until(lambda: bool(probe_targets()), 30, "the file_sd targets")
    for job, target in probe_targets().items():
        module, interval, timeout = PROBES[job]
        assert target["labels"]["instance"] == "redis"
        scrape = urllib.parse.urlsplit(target["scrapeUrl"])
        assert scrape.netloc == exporter
        assert scrape.path == "/probe"
        assert urllib.parse.parse_qs(scrape.query) == {"module": [module], "target": ["redis"]}
        assert parse_duration(target["scrapeInterval"], job) == parse_duration(interval, job)
        assert parse_duration(target["scrapeTimeout"], job) == parse_duration(timeout, job)


def test_prometheus_loads_every_rule(prometheus, rules):
    url, _ = prometheus
    groups = get_json(f"{url}/api/v1/rules")["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == len(rules)
    assert all(r["health"] in {"ok", "unknown"} for r in loaded)
