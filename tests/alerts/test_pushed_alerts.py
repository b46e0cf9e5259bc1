"""The alerts the exporter pushes itself (exporter.follow) are the rules' own alerts.

promtool fires each unit-state rule with exactly the labels and annotations the exporter
pushes; amtool routes the two alike; a real Alertmanager takes the push and the rule's alert
(as Prometheus sends it) as one alert, delivers it to the remediator, and in a maintenance
window mutes it for the remediator only, as it does the rule's.
"""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime

import pytest
import yaml

from exporter.push import AlertPusher, alert
from redis_autoheal.rulefile import load_state_alerts
from tests.alerts import test_alertmanager as shipped
from tests.alerts.local_servers import get_json, post_json, wait_until
from tests.alerts.paths import ALERTS
from tests.alerts.test_alertmanager import GRACE, _got, _route
from tests.support import HANG

RULES = ALERTS / "rules" / "redis-autoheal.rules.yml"
UNIT = "redis-server"
alertmanager = shipped.alertmanager  # the real Alertmanager with the shipped routes


@pytest.fixture(scope="module")
def state_alerts():
    return load_state_alerts(RULES, "rules")


def test_the_pushed_alerts_are_the_unit_state_rules(state_alerts):
    assert {state: a.name for state, a in state_alerts.items()} == {
        "inactive": "RedisServiceInactive",
        "failed": "RedisServiceFailed",
    }


def test_promtool_fires_exactly_what_the_exporter_pushes(promtool, state_alerts, tmp_path):
    tests = []
    for state, state_alert in state_alerts.items():
        labels, annotations = state_alert.alert("vm3", UNIT)
        series = (
            f'redis_systemd_unit_state{{job="redis-systemd", instance="vm3", unit="{UNIT}", '
            f'state="{state}"}}'
        )
        # The rule fires as the safety net: the exporter follows the unit, its push not taken.
        followed = (
            f'redis_systemd_unit_followed{{job="redis-systemd", instance="vm3", unit="{UNIT}"}}'
        )
        expected = {k: v for k, v in labels.items() if k != "alertname"}
        tests.append(
            {
                "interval": "60s",
                "input_series": [
                    {"series": series, "values": "1x3"},
                    {"series": followed, "values": "0x3"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "60s",
                        "alertname": state_alert.name,
                        "exp_alerts": [{"exp_labels": expected, "exp_annotations": annotations}],
                    }
                ],
            }
        )
    test_file = tmp_path / "pushed.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests}))
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=HANG,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_routes_the_pushed_alert_as_the_rules(amtool, rules, state_alerts):
    for state_alert in state_alerts.values():
        (rule,) = [r for r in rules if r["alert"] == state_alert.name]
        pushed, _ = state_alert.alert("vm3", UNIT)
        as_prometheus = {"alertname": rule["alert"], "instance": "vm3", **rule["labels"]}
        as_prometheus |= {"job": "redis-systemd", "unit": UNIT, "state": state_alert.state}
        assert pushed == as_prometheus
        assert _route(amtool, pushed) == ["remediator", "oncall"]


def _push(url: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
    async def push() -> bool:
        pusher = AlertPusher([url], timeout_seconds=5)
        try:
            now = datetime.now(UTC).timestamp()
            return await pusher.push([alert(labels, annotations, now, now + 240)])
        finally:
            await pusher.close()

    assert asyncio.run(push())


@pytest.mark.parametrize("alertmanager", [False], indirect=True, ids=["outside-maintenance"])
def test_alertmanager_takes_the_push_and_the_rules_alert_as_one(alertmanager, state_alerts):
    url, recorder, _ = alertmanager
    labels, annotations = state_alerts["failed"].alert("vm3", UNIT)
    _push(url, labels, annotations)
    wait_until(
        lambda: ("RedisServiceFailed", "vm3", "critical", "firing") in _got(recorder, "remediator"),
        HANG,
        "the remediator to get the pushed RedisServiceFailed",
    )
    # Prometheus' rule fires the same alert a scrape later: Alertmanager sees one alert.
    now = datetime.now(UTC).isoformat()
    post_json(
        f"{url}/api/v2/alerts", [{"labels": labels, "annotations": annotations, "startsAt": now}]
    )

    def held() -> list[dict]:
        return [
            a
            for a in get_json(f"{url}/api/v2/alerts")
            if a["labels"]["alertname"] == "RedisServiceFailed"
        ]

    wait_until(lambda: bool(held()), HANG, "Alertmanager to hold the alert")
    (one,) = held()
    assert one["labels"] == labels
    assert one["annotations"] == annotations


@pytest.mark.parametrize("alertmanager", [True], indirect=True, ids=["in-maintenance"])
def test_a_pushed_alert_in_maintenance_pages_but_does_not_heal(alertmanager, state_alerts):
    url, recorder, log = alertmanager
    labels, annotations = state_alerts["inactive"].alert("vm3", UNIT)
    _push(url, labels, annotations)
    wait_until(
        lambda: ("RedisServiceInactive", "vm3", "critical", "firing") in _got(recorder, "oncall"),
        GRACE + HANG,
        "on-call to be paged",
    )
    wait_until(
        lambda: "route is within mute time" in log.read_text(),
        HANG,
        "Alertmanager to mute the remediator's group",
    )
    assert _got(recorder, "remediator") == set()
