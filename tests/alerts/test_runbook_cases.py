"""The hand-written promtool cases of cases/runbook_thresholds.test.yml against the shipped
rules: the runbook's thresholds, each tried on both sides of its boundary, by the real
`promtool test rules`. The cases are not generated, so a wrong threshold in the generator (or
a hand edit of the rules) fails here even though the generated tests agree with it.

A second test changes each threshold of the rules by one step, or a `>=` into `>`, and checks
that the cases notice: a case file that cannot fail would be no check at all."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.alerts.paths import ALERTS

CASES = Path(__file__).parent / "cases" / "runbook_thresholds.test.yml"
RULES = ALERTS / "rules" / "redis-autoheal.rules.yml"

# (alert, severity, field, old, new): one change (every `old` in the field of one rule made
# `new`) each; the cases must fail on every one.
MUTATIONS = [
    ("RedisDown", "critical", "expr", ">= 3", ">= 2"),
    ("RedisDown", "critical", "expr", ">= 3", ">= 4"),
    ("RedisDown", "critical", "expr", "[89s]) == 0", "[119s]) == 0"),
    ("RedisDown", "critical", "expr", 'job="redis-connectivity"', 'job=~"redis.*"'),
    ("RedisPingLatencyHigh", "warning", "expr", ">= 0.005", "> 0.005"),
    ("RedisPingLatencyHigh", "warning", "expr", ">= 0.005", ">= 0.004"),
    ("RedisPingLatencyHigh", "critical", "expr", "> 0.05", ">= 0.05"),
    ("RedisPingLatencyHigh", "critical", "expr", "> 0.05", "> 0.051"),
    ("RedisServiceInactive", "critical", "expr", "== 1", "== 0"),
    ("RedisServiceFailed", "critical", "expr", 'state="failed"', 'state="inactive"'),
    ("RedisServiceTransitionStuck", "warning", "expr", "activating|", ""),
    ("RedisMemoryHigh", "warning", "expr", ">= 3072", "> 3072"),
    ("RedisMemoryHigh", "warning", "expr", ">= 3072", ">= 3071"),
    ("RedisMemoryHigh", "warning", "for", "2m", "5m"),
    ("RedisMemoryHigh", "critical", "expr", "> 4000", ">= 4000"),
    ("RedisMemoryHigh", "critical", "expr", "> 4000", "> 4001"),
    ("RedisMemoryHigh", "critical", "expr", "/ 1024 / 1024", "/ 1000 / 1000"),
    ("RedisClientsHigh", "warning", "expr", ">= 8000", "> 8000"),
    ("RedisClientsHigh", "warning", "expr", ">= 8000", ">= 7999"),
    ("RedisClientsHigh", "critical", "expr", "> 9500", ">= 9500"),
    ("RedisClientsHigh", "critical", "expr", "> 9500", "> 9501"),
    ("RedisOpsHigh", "warning", "expr", ">= 10000", "> 10000"),
    ("RedisOpsHigh", "warning", "expr", ">= 10000", ">= 9999"),
    ("RedisOpsHigh", "critical", "expr", "> 50000", ">= 50000"),
    ("RedisOpsHigh", "critical", "expr", "> 50000", "> 50001"),
    ("RedisMemoryNearMax", "warning", "expr", "> 75", ">= 75"),
    ("RedisMemoryNearMax", "warning", "expr", "> 75", "> 76"),
    ("RedisMemoryNearMax", "warning", "expr", "> 0)", ">= 0)"),
    ("RedisClientsNearMax", "warning", "expr", "> 80", ">= 80"),
    ("RedisClientsNearMax", "warning", "expr", "> 80", "> 81"),
    ("RedisRecoveryCircuitOpen", "critical", "expr", "== 1", "== 0"),
    ("RedisOperationsBurst", "warning", "expr", ">= 3", ">= 2"),
    ("RedisOperationsBurst", "warning", "expr", ">= 3", ">= 4"),
    ("RedisOperationsBurst", "warning", "expr", "offset 75s", "offset 4m"),
    ("RedisOperationsBurst", "warning", "expr", "sum by (target)", "sum by (target, operation)"),
]


def _rules_without_texts() -> dict:
    """The shipped rules with their annotations removed: the cases check what fires and with
    which labels; the texts have their own tests (the generated ones, and test_alertmanager)."""
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return data


def _mutated(alert: str, severity: str, field: str, old: str, new: str) -> dict:
    data = _rules_without_texts()
    (rule,) = [
        r
        for g in data["groups"]
        for r in g["rules"]
        if r["alert"] == alert and r["labels"]["severity"] == severity
    ]
    text = str(rule[field])
    assert old in text, f"{alert}/{severity}: no {old!r} in its {field}: {text}"
    rule[field] = text.replace(old, new)
    return data


def _case_dir(directory: Path, rules: dict, alert: str | None = None) -> Path:
    """The cases beside `rules` as rules.yml; only those about `alert` if one is given."""
    directory.mkdir(parents=True)
    (directory / "rules.yml").write_text(yaml.safe_dump(rules))
    if alert is None:
        shutil.copy(CASES, directory / CASES.name)
    else:
        data = yaml.safe_load(CASES.read_text())
        data["tests"] = [
            case
            for case in data["tests"]
            if any(check["alertname"] == alert for check in case["alert_rule_test"])
        ]
        (directory / CASES.name).write_text(yaml.safe_dump(data))
    return directory / CASES.name


def _promtool_test(promtool: str, files: list[Path]) -> dict[str, str]:
    """Run `promtool test rules` once over `files`; each file's outcome, SUCCESS or FAILED."""
    # One stream: promtool writes SUCCESS to stdout and FAILED to stderr, each line at once.
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    outcome = dict(re.findall(r"Unit Testing:\s+(\S+)\s*\n\s*(SUCCESS|FAILED)", result.stdout))
    assert outcome.keys() == {str(f) for f in files}, result.stdout
    assert (result.returncode == 0) == all(v == "SUCCESS" for v in outcome.values())
    return outcome | {"": result.stdout}


def test_the_shipped_rules_pass_the_runbook_cases(promtool, tmp_path):
    case = _case_dir(tmp_path / "shipped", _rules_without_texts())
    outcome = _promtool_test(promtool, [case])
    assert outcome[str(case)] == "SUCCESS", outcome[""]


def test_the_cases_cover_every_runbook_threshold():
    # Every alert with a runbook threshold has a case that fires and one that does not.
    cases = yaml.safe_load(CASES.read_text())["tests"]
    firing = {
        (check["alertname"], alert["exp_labels"]["severity"])
        for case in cases
        for check in case["alert_rule_test"]
        for alert in check["exp_alerts"]
    }
    checks = [check for case in cases for check in case["alert_rule_test"]]
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    for alert, severity, *_ in MUTATIONS:
        assert (alert, severity) in firing, f"no case where {alert} ({severity}) fires"
        assert alert in quiet, f"no case where {alert} stays quiet"


def test_the_cases_fail_when_a_threshold_changes(promtool, tmp_path):
    files = [
        _case_dir(tmp_path / f"mutant-{n}", _mutated(*mutation), alert=mutation[0])
        for n, mutation in enumerate(MUTATIONS)
    ]
    outcome = _promtool_test(promtool, files)
    survivors = [m for m, f in zip(MUTATIONS, files, strict=True) if outcome[str(f)] != "FAILED"]
    assert not survivors, f"the cases did not notice these changes of the rules: {survivors}"


@pytest.mark.parametrize("bad", ["exp_alerts: []", "severity: warning"])
def test_a_wrong_expectation_fails(promtool, tmp_path, bad):
    # The runner itself: a case file that promtool rejects must not pass.
    directory = tmp_path / "wrong"
    case = _case_dir(directory, _rules_without_texts())
    text = case.read_text()
    if bad == "exp_alerts: []":
        text = text.replace(
            "{eval_time: 4m, alertname: RedisClientsHigh, exp_alerts: []}",
            "{eval_time: 4m, alertname: RedisClientsHigh, exp_alerts: [{exp_labels: {}}]}",
            1,
        )
    else:
        text = text.replace("severity: warning", "severity: critical", 1)
    assert text != case.read_text()
    case.write_text(text)
    assert _promtool_test(promtool, [case])[str(case)] == "FAILED"
