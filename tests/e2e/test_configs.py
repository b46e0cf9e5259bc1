"""The stack's generated configs (demo/configs.py), checked without running anything: valid
for promtool and amtool, routing exactly as alerts/alertmanager.yml does, and nothing in them
that could reach beyond loopback (no e-mail, Slack or PagerDuty; every URL 127.x)."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import yaml

from demo import configs
from demo.configs import ALERTS, FAST, Ports
from demo.loopback import NotLoopback, check_loopback
from redis_autoheal.config import load_settings

PORTS = Ports(exporter=19121, remediator=19122, prometheus=19090, alertmanager=19093)
SINK = "http://127.0.0.1:19999"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stack")
    token = d / "webhook.token"
    token.write_text("token\n")
    token.chmod(0o600)
    rules = configs.rules(d / "alerts", FAST)
    return {
        "rules": rules,
        "prometheus": configs.prometheus_config(
            d / "prometheus.yml", PORTS, FAST, rules, d / "targets"
        ),
        "alertmanager": configs.alertmanager_config(d / "am.yml", PORTS, FAST, token, SINK),
    }


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _urls(node: object) -> list[str]:
    if isinstance(node, dict):
        return [u for v in node.values() for u in _urls(v)]
    if isinstance(node, list):
        return [u for v in node for u in _urls(v)]
    if isinstance(node, str):
        return re.findall(r"\w+://[^\s'\"]+", node)
    return []


def test_alertmanager_reaches_nothing_but_loopback(generated):
    config = _load(generated["alertmanager"])
    assert "global" not in config  # no SMTP host
    for receiver in config["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}, receiver  # no email/slack/pagerduty
    urls = [c["url"] for r in config["receivers"] for c in r["webhook_configs"]]
    assert sorted(urls) == sorted(
        [f"{SINK}/oncall", f"{SINK}/ops", f"http://127.0.0.1:{PORTS.remediator}/webhook"]
    )
    for url in _urls(config):
        check_loopback(url)


def test_prometheus_scrapes_and_alerts_only_loopback(generated, promtool):
    config = _load(generated["prometheus"])
    addresses = [
        t
        for a in config["alerting"]["alertmanagers"]
        for s in a["static_configs"]
        for t in s["targets"]
    ]
    for job in config["scrape_configs"]:
        addresses += [t for s in job.get("static_configs", []) for t in s["targets"]]
        addresses += [
            r["replacement"]
            for r in job.get("relabel_configs", [])
            if r.get("target_label") == "__address__"
        ]
        assert "remote_write" not in job
    assert "remote_write" not in config
    assert len(addresses) == 6
    for address in addresses:
        assert ipaddress.ip_address(address.rsplit(":", 1)[0]).is_loopback, address
    _passes(promtool, "check", "config", str(generated["prometheus"]))


def test_fast_rules_still_count_three_failed_pings(generated, promtool):
    rules = {r["alert"]: r for g in _load(generated["rules"])["groups"] for r in g["rules"]}
    down = rules["RedisDown"]
    window = f"[{3 * FAST.connectivity - 1}s]"
    assert f'count_over_time(redis_up{{job="redis-connectivity"}}{window}) >= 3' in down["expr"]
    assert f'max_over_time(redis_up{{job="redis-connectivity"}}{window}) == 0' in down["expr"]
    # The temporary workaround (demo/configs.py): one scrape interval of keep_firing_for.
    assert down["keep_firing_for"] == f"{FAST.connectivity}s"
    assert rules["RedisSshUnreachable"]["keep_firing_for"] == f"{FAST.systemd}s"
    assert sum("keep_firing_for" in r for r in rules.values()) == 2
    _passes(promtool, "check", "rules", str(generated["rules"]))


def test_the_fast_cadence_fits_the_counting_window():
    # An evaluation must fall between the end of a timed-out PING scrape (its sample appears)
    # and 1 s short of the next scrape: the evaluation interval must fit in that gap.
    ping_budget = FAST.connectivity_timeout - 0.5  # the exporter answers 0.5 s early
    assert FAST.evaluation <= FAST.connectivity - 1 - ping_budget
    assert FAST.connectivity >= 2  # the generator's minimum


def test_the_stack_config_says_what_its_prometheus_and_rules_do(generated, tmp_path):
    secrets = configs.Secrets(tmp_path / "webhook.token", tmp_path / "admin.token")
    path = configs.autoheal_config(
        tmp_path / "config.yml",
        {"redis": {"port": 6379}, "ssh": {"user": "autobot"}},
        PORTS,
        secret_files=secrets,
        state_dir=tmp_path / "state",
        audit_path=tmp_path / "audit.log",
        cadence=FAST,
    )
    health = load_settings(path).health_check
    (job,) = [
        j
        for j in _load(generated["prometheus"])["scrape_configs"]
        if j["job_name"] == "redis-connectivity"
    ]
    assert job["scrape_interval"] == f"{health.interval_seconds:g}s"
    rules = {r["alert"]: r for g in _load(generated["rules"])["groups"] for r in g["rules"]}
    assert f">= {health.failure_threshold}\n" in rules["RedisDown"]["expr"] + "\n"


def _passes(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _routes(amtool: str, config: Path, labels: dict[str, str]) -> list[str]:
    pairs = [f"{k}={v}" for k, v in labels.items()]
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *pairs],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


def test_alertmanager_routes_every_alert_as_the_shipped_config_does(generated, amtool):
    # tests/alerts proves each alert reaches exactly its receivers with alerts/alertmanager.yml;
    # here: the stack's copy (receivers and waits changed) routes every alert the same way.
    _passes(amtool, "check-config", str(generated["alertmanager"]))
    rules = [r for g in _load(generated["rules"])["groups"] for r in g["rules"]]
    assert len(rules) > 20
    for rule in rules:
        labels = {"alertname": rule["alert"], "instance": "redis", **rule["labels"]}
        assert _routes(amtool, generated["alertmanager"], labels) == _routes(
            amtool, ALERTS / "alertmanager.yml", labels
        ), rule["alert"]


def test_waits_are_the_fast_cadence(generated):
    route = _load(generated["alertmanager"])["route"]
    waits = {(r["receiver"], tuple(r["matchers"])): r["group_wait"] for r in route["routes"]}
    assert waits == {
        ("remediator", ('remediate="true"',)): FAST.remediator_group_wait,
        ("oncall", ('remediate="true"', 'severity="critical"')): FAST.page_grace,
        ("oncall", ('severity="critical"',)): FAST.page_wait,
    }
    assert all("mute_time_intervals" not in r for r in route["routes"])


def test_maintenance_windows_can_be_kept(tmp_path):
    token = tmp_path / "t"
    token.write_text("t\n")
    path = configs.alertmanager_config(
        tmp_path / "am.yml", PORTS, FAST, token, SINK, maintenance_windows=True
    )
    (remediator,) = [r for r in _load(path)["route"]["routes"] if r["receiver"] == "remediator"]
    assert remediator["mute_time_intervals"] == ["weekly-maintenance", "monthly-maintenance"]


def test_secrets_are_private_files(tmp_path):
    made = configs.write_secrets(tmp_path / "secrets")
    for path in (made.webhook_token_file, made.admin_token_file):
        assert path.stat().st_mode & 0o777 == 0o600
        assert len(path.read_text().strip()) >= 32
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert made.webhook_token_file.read_text() != made.admin_token_file.read_text()


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x",
        "https://127.0.0.1/",
        "http://example.com/",
        "http://[::1]/",
        "smtp://127.0.0.1",
    ],
)
def test_only_loopback_http_is_allowed(url):
    with pytest.raises(NotLoopback):
        check_loopback(url)


def test_loopback_is_allowed():
    assert check_loopback("http://127.0.0.1:9090/api") == "http://127.0.0.1:9090/api"
    assert check_loopback("http://127.1.2.3/") == "http://127.1.2.3/"


def test_urls_helper_finds_urls():
    assert _urls({"a": ["see http://127.0.0.1:1/x and smtp://h"]}) == [
        "http://127.0.0.1:1/x",
        "smtp://h",
    ]
    assert urllib.parse.urlsplit(SINK).hostname == "127.0.0.1"
