"""The rules generator: its output is current, a changed threshold flows into rules and tests,
and a bad thresholds file is refused with the key named."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from alerts.generator.__main__ import RULES, TESTS, THRESHOLDS, main
from alerts.generator.gotemplate import TemplateError, humanize_duration, render
from redis_autoheal.thresholds import ThresholdsError, format_duration, parse, parse_duration
from tests.alerts.paths import ALERTS, ROOT


def test_generated_files_are_up_to_date(capsys):
    # A stale file means thresholds.yml or the generator changed without a regeneration.
    assert main(["--check"]) == 0, capsys.readouterr().err


def test_check_names_a_stale_file(tmp_path, capsys):
    rules = tmp_path / "rules.yml"
    tests = tmp_path / "tests" / "test.yml"
    argv = ["--rules", str(rules), "--tests", str(tests), "--docker", str(tmp_path / "docker")]
    assert main(argv) == 0
    assert main([*argv, "--check"]) == 0
    rules.write_text(rules.read_text().replace(">= 3072", ">= 3000"))
    compose_am = tmp_path / "docker" / "alertmanager" / "alertmanager.yml"
    compose_am.write_text(
        compose_am.read_text().replace("send_resolved: true", "send_resolved: false", 1)
    )
    capsys.readouterr()
    assert main([*argv, "--check"]) == 1
    err = capsys.readouterr().err
    assert str(rules) in err
    assert str(compose_am) in err


def test_no_docker_leaves_the_compose_configs_alone(tmp_path):
    # The demo generates its rules with --no-docker: it must not touch docker/.
    # (tests/docker checks what the compose configs hold.)
    argv = ["--rules", str(tmp_path / "r.yml"), "--tests", str(tmp_path / "t.yml")]
    docker = tmp_path / "docker"
    assert main([*argv, "--docker", str(docker), "--no-docker"]) == 0
    assert not docker.exists()
    assert main([*argv, "--docker", str(docker)]) == 0
    assert (docker / "prometheus" / "prometheus.yml").is_file()


def _runbook_data() -> dict:
    return yaml.safe_load(THRESHOLDS.read_text())


def _variant(tmp_path, change) -> tuple:
    """Generate rules and tests from a changed copy of thresholds.yml into tmp_path."""
    data = _runbook_data()
    change(data)
    thresholds = tmp_path / "thresholds.yml"
    thresholds.write_text(yaml.safe_dump(data))
    rules = tmp_path / "rules" / "r.yml"
    tests = tmp_path / "tests" / "t.yml"
    argv = ["--thresholds", str(thresholds), "--rules", str(rules), "--tests", str(tests)]
    assert main([*argv, "--no-docker"]) == 0
    return rules, tests


def _other_thresholds(data: dict) -> None:
    a = data["alerts"]
    a["RedisDown"]["failed_pings"] = 5
    a["RedisSshUnreachable"]["failed_probes"] = 3
    a["RedisPingLatencyHigh"].update(warning_ms=7.5, critical_ms=70, **{"for": "45s"})
    a["RedisMemoryHigh"].update(warning_mb=1000, critical_mb=1500)
    a["RedisClientsHigh"].update(warning=100, critical=101)
    a["RedisOpsHigh"].update(warning=5, critical=20000)
    a["RedisMemoryNearMax"]["above_percent"] = 72.5
    a["RedisClientsNearMax"]["above_percent"] = 90
    a["RedisServiceTransitionStuck"]["for"] = "5m"
    a["RedisOperationsBurst"].update(operations=4, within="2m")
    a["RedisAutoRecoveryFailed"]["window"] = "30m"
    a["RedisRemediatorSecurityViolation"]["window"] = "5m"
    data["scrape_intervals"].update(connectivity="15s", systemd="2m", remediator="30s")


def _no_delays(data: dict) -> None:
    for settings in data["alerts"].values():
        if "for" in settings:
            settings["for"] = "0s"
    data["alerts"]["RedisDown"]["failed_pings"] = 1
    data["alerts"]["RedisOperationsBurst"]["operations"] = 1


@pytest.mark.parametrize("change", [_other_thresholds, _no_delays], ids=["other", "no-delays"])
def test_changed_thresholds_flow_into_rules_and_pass_their_tests(tmp_path, promtool, change):
    rules, tests = _variant(tmp_path, change)
    for argv in (["check", "rules", str(rules)], ["test", "rules", str(tests)]):
        result = subprocess.run([promtool, *argv], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_changed_threshold_appears_in_expression_and_text(tmp_path):
    rules, _ = _variant(tmp_path, _other_thresholds)
    text = rules.read_text()
    assert "/ 1024 / 1024 >= 1000" in text
    assert "/ 1024 / 1024 > 1500" in text
    assert "redis_ping_latency_seconds" in text
    assert ">= 0.0075" in text
    assert "> 72.5" in text
    assert "[74s]" in text  # 5 PINGs at 15 s, less 1 s
    assert "[359s]" in text  # 3 SSH probes at 2 m, less 1 s
    assert "offset 150s" in text  # 2 m of operations plus one 30 s scrape
    assert "did not answer PING 5 times in a row" in text
    assert "warning 1000-1500 MB" in text
    assert ">= 3072" not in text


def _set(path: str, value: object):
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("alerts.RedisMemoryHigh.warning_mb", 5000, "below critical_mb"),
        ("alerts.RedisMemoryHigh.warning_mb", "3 GB", "number"),
        ("alerts.RedisMemoryHigh.warning_mb", 3072.5, "whole"),
        ("alerts.RedisPingLatencyHigh.warning_ms", 0, "above 0"),
        ("alerts.RedisDown.failed_pings", 0, "at least 1"),
        ("alerts.RedisDown.failed_pings", True, "number"),
        ("alerts.RedisDown.failed_ping", 3, "unknown key"),
        ("alerts.RedisDown.failed_pings", _DELETE, "missing"),
        ("alerts.RedisNew", {"for": "1m"}, "unknown key"),
        ("alerts.RedisOpsHigh", _DELETE, "missing"),
        ("alerts.RedisOpsHigh.for", "2 minutes", "duration"),
        ("alerts.RedisOpsHigh.for", 120, "duration"),
        ("alerts.RedisAutoRecoveryFailed.window", "0s", "longer"),
        ("alerts.RedisMemoryNearMax.above_percent", 100, "below 100"),
        ("alerts.RedisMemoryNearMax.above_percent", 75.125, "2 decimals"),
        ("scrape_intervals.connectivity", "1s", "at least 2s"),
        ("scrape_intervals.ssh", "1m", "unknown key"),
        ("runbook_url", "docs/runbook.md", "URL"),
        ("runbook_url", "https://x/runbook#top", "anchor"),
        ("alerts", [], "mapping"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(key, value, problem):
    data = copy.deepcopy(_runbook_data())
    _set(key, value)(data)
    with pytest.raises(ThresholdsError) as raised:
        parse(data)
    assert raised.value.key == key
    assert problem in str(raised.value)


def test_the_command_reports_a_bad_file_with_its_key(tmp_path):
    bad = tmp_path / "thresholds.yml"
    bad.write_text(THRESHOLDS.read_text().replace("warning_mb: 3072", "warning_mb: 9999"))
    result = subprocess.run(
        [sys.executable, "-m", "alerts.generator", "--check", "--thresholds", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "alerts.RedisMemoryHigh.warning_mb: must be below critical_mb" in result.stderr
    assert RULES.exists()
    assert TESTS.exists()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h", 3600), ("1m30s", 90), ("1d", 86400), ("0s", 0)],
)
def test_durations_parse(text, seconds):
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (89, "89s"), (120, "2m"), (3600, "1h")])
def test_durations_format(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    # Outputs of Prometheus 2.42's humanizeDuration (template/template_test.go and by hand).
    [
        (0, "0s"),
        (0.0051, "5.1ms"),
        (0.05, "50ms"),
        (0.0049, "4.9ms"),
        (0.000001, "1us"),
        (1, "1s"),
        (60, "1m 0s"),
        (3625, "1h 0m 25s"),
        (270000, "3d 3h 0m 0s"),
        (-90, "-1m 30s"),
        (1.5, "1.5s"),
    ],
)
def test_humanize_duration_matches_prometheus(value, text):
    assert humanize_duration(value) == text


def test_render_knows_only_its_actions():
    assert render(
        '{{ $labels.instance }} {{ printf "%.2f" $value }}', {"instance": "r"}, 75.01
    ) == ("r 75.01")
    with pytest.raises(TemplateError, match="unknown template action"):
        render("{{ $value | humanize }}", {}, 1)
    with pytest.raises(TemplateError, match="uses label 'unit'"):
        render("{{ $labels.unit }}", {"instance": "r"}, 1)


def test_generator_passes_mypy_strict():
    # pyproject's mypy `files` does not list alerts/; check it here.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(ALERTS / "generator")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
