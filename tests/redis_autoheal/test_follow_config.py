"""exporter.follow in the config file: what it takes, and the one-line errors when it is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from redis_autoheal.config import Config, load_config
from redis_autoheal.errors import ConfigError

RULES = Path(__file__).resolve().parents[2] / "alerts" / "rules" / "redis-autoheal.rules.yml"


def _load(tmp_path: Path, follow: object) -> Config:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"targets": [{"name": "vm3"}], "exporter": {"follow": follow}}))
    return load_config(path)


def _rules(tmp_path: Path, rule: Mapping[str, object]) -> str:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    return str(path)


STOPPED = {
    "alert": "Stopped",
    "expr": 'redis_systemd_unit_state{job="redis-systemd", state="inactive"} == 1',
    "labels": {"severity": "critical", "remediate": "true"},
    "annotations": {"summary": "{{ $labels.unit }} on {{ $labels.instance }} stopped"},
}


def test_follow_is_off_unless_configured(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("targets: [{name: vm3}]\n")
    assert load_config(path).exporter.follow is None


def test_follow_reads_the_state_alerts_of_the_rules_file(tmp_path):
    config = _load(
        tmp_path, {"alertmanager_urls": ["http://127.0.0.1:9093"], "rules_file": str(RULES)}
    )
    follow = config.exporter.follow
    assert follow is not None
    assert follow.resend_seconds == 60
    assert follow.reconnect_max_seconds == 30
    assert sorted(follow.alerts) == ["failed", "inactive"]


UNLESS_FOLLOWED = 'unless on(instance, unit) redis_systemd_unit_followed{job="redis-systemd"} == 1'


@pytest.mark.parametrize(
    "expr",
    [
        STOPPED["expr"],
        f"{STOPPED['expr']} {UNLESS_FOLLOWED}",  # as generated: stands down while pushed
        f"{STOPPED['expr']}\n  {UNLESS_FOLLOWED}\n",
    ],
    ids=["plain", "unless-followed", "unless-followed-on-its-own-line"],
)
def test_a_rule_of_its_own_is_pushed_with_its_labels_and_filled_annotations(tmp_path, expr):
    rules = _rules(tmp_path, STOPPED | {"expr": expr})
    config = _load(tmp_path, {"alertmanager_urls": ["http://am:9093/"], "rules_file": rules})
    follow = config.exporter.follow
    assert follow is not None
    labels, annotations = follow.alerts["inactive"].alert("vm3", "redis-server")
    assert labels == {
        "alertname": "Stopped",
        "job": "redis-systemd",
        "state": "inactive",
        "severity": "critical",
        "remediate": "true",
        "instance": "vm3",
        "unit": "redis-server",
    }
    assert annotations == {"summary": "redis-server on vm3 stopped"}


@pytest.mark.parametrize(
    ("follow", "message"),
    [
        (
            {"alertmanager_urls": [], "rules_file": str(RULES)},
            "exporter.follow.alertmanager_urls: must list at least one Alertmanager",
        ),
        (
            {"alertmanager_urls": ["127.0.0.1:9093"], "rules_file": str(RULES)},
            (
                "exporter.follow.alertmanager_urls: must be http(s)://HOST:PORT[/PATH] URLs, "
                "got '127.0.0.1:9093'"
            ),
        ),
        ({"alertmanager_urls": ["http://am:9093"]}, "exporter.follow.rules_file: is required"),
        (
            {"alertmanager_urls": ["http://am:9093"], "rules_file": "/nonexistent/rules.yml"},
            "exporter.follow.rules_file: cannot read /nonexistent/rules.yml",
        ),
        (
            {
                "alertmanager_urls": ["http://am:9093"],
                "rules_file": str(RULES),
                "resend_seconds": 0,
            },
            "exporter.follow.resend_seconds: must be",
        ),
        (
            {"alertmanager_urls": ["http://am:9093"], "rules_file": str(RULES), "alerts": {}},
            "exporter.follow.alerts:",
        ),
    ],
)
def test_bad_follow_settings_are_refused(tmp_path, follow, message):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, follow)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"alert": "Other", "expr": "up == 0"}], "has no alert on `redis_systemd_unit_state"),
        (  # another condition than the follower's: Prometheus would not fire what is pushed
            [STOPPED | {"expr": f"{STOPPED['expr']} unless on(instance) maintenance == 1"}],
            "has no alert on `redis_systemd_unit_state",
        ),
        ([STOPPED | {"for": "1m"}], "alert Stopped waits `for: 1m`; the exporter pushes at once"),
        (
            [STOPPED | {"annotations": {"summary": "{{ $value }} down"}}],
            (
                "alert Stopped's summary uses {{ $value }}; the exporter fills in only "
                "{{ $labels.NAME }}"
            ),
        ),
        ([STOPPED, STOPPED | {"alert": "Again"}], "alerts Stopped and Again both fire for state"),
    ],
)
def test_rules_the_exporter_could_not_push_as_prometheus_would_are_refused(
    tmp_path, rules, message
):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"alertmanager_urls": ["http://am:9093"], "rules_file": str(path)})
    assert str(caught.value).startswith("exporter.follow.rules_file: ")
    assert message in str(caught.value)


def test_a_rules_file_that_is_not_one_is_refused(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="is not a Prometheus rules file"):
        _load(tmp_path, {"alertmanager_urls": ["http://am:9093"], "rules_file": str(path)})
