"""The alerting rules: valid for promtool, passing their unit tests, covering docs/reference.md, and
those unit tests covering every alert and every threshold boundary."""

from __future__ import annotations

import re
import subprocess
from decimal import Decimal

import pytest
import yaml

from tests.alerts.paths import ALERTS, ROOT

# docs/reference.md's table of alerts, with the severities it fixes (None: both bands).
CONTRACT = {
    "RedisDown": "critical",
    "RedisServiceInactive": "critical",
    "RedisServiceFailed": "critical",
    "RedisServiceTransitionStuck": "warning",
    "RedisSshUnreachable": "critical",
    "RedisPingLatencyHigh": None,
    "RedisMemoryHigh": None,
    "RedisClientsHigh": None,
    "RedisOpsHigh": None,
    "RedisMemoryNearMax": "warning",
    "RedisClientsNearMax": "warning",
    "RedisRdbSaveFailed": "critical",
    "RedisAutoRecoveryFailed": "critical",
    "RedisRecoveryCircuitOpen": "critical",
    "RedisOperationsBurst": "warning",
    "RedisRemediatorSecurityViolation": "critical",
}
REMEDIATED = {"RedisDown", "RedisServiceInactive", "RedisServiceFailed"}
TEST_FILES = sorted((ALERTS / "tests").glob("*.yml"))


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)


def test_promtool_check_rules(promtool):
    result = _run([promtool, "check", "rules", *map(str, (ALERTS / "rules").glob("*.yml"))])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules(promtool):
    # The shipped files, as a user runs them: promtool test rules alerts/tests/*.yml
    assert TEST_FILES
    result = _run([promtool, "test", "rules", *map(str, TEST_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_contract_alert_exists_with_its_severity(rules):
    severities: dict[str, set[str]] = {}
    for rule in rules:
        severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    for alert, severity in CONTRACT.items():
        assert alert in severities, f"{alert} of docs/reference.md has no rule"
        expected = {"warning", "critical"} if severity is None else {severity}
        assert severities[alert] == expected, alert


def test_every_rule_tells_on_call_what_to_do(rules):
    for rule in rules:
        labels, annotations = rule["labels"], rule["annotations"]
        assert labels["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert annotations["runbook_url"].startswith("https://"), rule["alert"]
        assert "#" in annotations["runbook_url"], f"{rule['alert']}: no runbook section"
        assert len(annotations["description"]) > len(annotations["summary"]), rule["alert"]


def test_remediate_only_where_the_remediator_acts(rules):
    for rule in rules:
        remediate = rule["labels"].get("remediate")
        if rule["alert"] in REMEDIATED:
            assert remediate == "true", rule["alert"]
        else:
            assert remediate is None, f"{rule['alert']} must not reach the remediator"


def test_every_selector_names_its_job(rules):
    # redis_exporter exports redis_up too: an unscoped selector could trigger a remediation
    # from someone else's metrics.
    selector = re.compile(r"\b((?:redis|autoheal)_[a-z_]+|up)\b(\{[^}]*\})?")
    for rule in rules:
        for metric, matchers in selector.findall(rule["expr"]):
            assert 'job="' in matchers or "job=~" in matchers, f"{rule['alert']}: {metric}"


def test_remediator_alerts_carry_the_target_as_instance(rules):
    # Grouping, inhibition and the remediator use `instance` as the target name.
    for rule in rules:
        if "autoheal_" in rule["expr"] and "target" in rule["expr"]:
            assert "label_replace(" in rule["expr"], rule["alert"]
            assert '"instance", "$1", "target"' in rule["expr"], rule["alert"]


def _tests() -> list[dict]:
    out = []
    for path in TEST_FILES:
        out.extend(yaml.safe_load(path.read_text())["tests"])
    return out


def test_every_alert_has_a_firing_and_a_not_firing_case(rules):
    firing: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for group in _tests():
        for check in group["alert_rule_test"]:
            if check["exp_alerts"]:
                for alert in check["exp_alerts"]:
                    firing.add((check["alertname"], alert["exp_labels"]["severity"]))
            else:
                quiet.add(check["alertname"])
    for rule in rules:
        assert (rule["alert"], rule["labels"]["severity"]) in firing, rule["alert"]
        assert rule["alert"] in quiet, rule["alert"]


def _expectations(alert: str, metric: str) -> dict[Decimal, set[str]]:
    """For each constant input value of `metric`, the severities expected once `for` passed."""
    out: dict[Decimal, set[str]] = {}
    for group in _tests():
        series = [s for s in group["input_series"] if s["series"].startswith(metric + "{")]
        checks = [c for c in group["alert_rule_test"] if c["alertname"] == alert]
        if len(series) != 1 or not checks:
            continue
        value = series[0]["values"].split()[0].split("x")[0]  # constant: "V" or "VxN"
        last = max(checks, key=lambda c: _seconds(c["eval_time"]))
        out[Decimal(value)] = {a["exp_labels"]["severity"] for a in last["exp_alerts"]}
    return out


def _seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


MIB = 1024 * 1024


BANDS = {
    # alert: (metric, threshold keys, the metric's value per threshold unit, the test's step)
    "RedisMemoryHigh": ("redis_memory_used_bytes", "warning_mb", "critical_mb", MIB, MIB),
    "RedisClientsHigh": ("redis_connected_clients", "warning", "critical", 1, 1),
    "RedisOpsHigh": ("redis_instantaneous_ops_per_sec", "warning", "critical", 1, 1),
    "RedisPingLatencyHigh": (
        "redis_ping_latency_seconds",
        "warning_ms",
        "critical_ms",
        Decimal("0.001"),
        Decimal("0.0001"),
    ),
}


@pytest.mark.parametrize("alert", BANDS)
def test_every_band_boundary_is_tested_below_at_and_above(thresholds, alert):
    # E.g. RedisMemoryHigh: 3071 MB nothing, 3072 MB warning, 4000 MB warning, 4001 MB both
    # (Alertmanager then inhibits the warning).
    metric, low, high, scale, step = BANDS[alert]
    warn = thresholds[alert].number(low) * scale
    crit = thresholds[alert].number(high) * scale
    got = _expectations(alert, metric)
    assert got[warn - step] == set()
    assert got[warn] == {"warning"}
    assert got[warn + step] == {"warning"}
    assert got[crit - step] == {"warning"}
    assert got[crit] == {"warning"}
    assert got[crit + step] == {"warning", "critical"}


def test_redis_down_needs_the_configured_number_of_failed_pings(thresholds):
    n = thresholds["RedisDown"].count("failed_pings")
    names = {g["name"] for g in _tests()}
    assert f"RedisDown: {n - 1} failed PINGs in a row, then PONG: no alert" in names
    assert any(name.startswith(f"RedisDown: {n} failed PINGs in a row fire") for name in names)
