"""A config's health_check.interval_seconds and failure_threshold reach Prometheus: `python -m
alerts.generator --config FILE --out DIR` writes a prometheus.yml that PINGs at that interval and
rules whose RedisDown needs that many failed PINGs; a bad value stops it and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alerts.generator.__main__ import main
from redis_autoheal.config import load_settings
from tests.alerts.paths import ALERTS, ROOT
from tests.support import HANG


def generate(tmp_path: Path, health_check: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the generator as a user does, on a config with this `health_check` (YAML)."""
    config = tmp_path / "config.yml"
    config.write_text(f"targets: [{{name: redis}}]\nhealth_check: {health_check}\n")
    out = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "alerts.generator", "--config", str(config), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    return result, out


def passes(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=HANG, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def connectivity_job(prometheus: dict) -> dict:
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "redis-connectivity"]
    return job


# Hand-written, not generated: RedisDown (read from Prometheus' ALERTS series) after 4 and after
# 5 failed PINGs 10 s apart, and never for 4 failures between PONGs.
REDIS_DOWN_AFTER_FIVE = """
rule_files: [rules/redis-autoheal.rules.yml]
evaluation_interval: {evaluation}
tests:
  - interval: 10s
    input_series:
      - series: 'redis_up{{job="redis-connectivity", instance="redis"}}'
        values: 1 0 0 0 0 0 0
      - series: 'redis_up{{job="redis-connectivity", instance="other"}}'
        values: 1 0 0 0 0 1 0
    promql_expr_test:
      - expr: ALERTS{{alertname="RedisDown", alertstate="firing"}}
        eval_time: 45s
        exp_samples: []
      - expr: count(ALERTS{{alertname="RedisDown", alertstate="firing"}}) by (instance)
        eval_time: 50s
        exp_samples: [{{labels: '{{instance="redis"}}', value: 1}}]
      - expr: ALERTS{{alertname="RedisDown", instance="other"}}
        eval_time: 1m
        exp_samples: []
"""


def test_the_config_sets_the_ping_interval_and_the_failed_pings(tmp_path, promtool):
    result, out = generate(tmp_path, "{interval_seconds: 10, failure_threshold: 5}")
    assert result.returncode == 0, result.stderr

    prometheus = yaml.safe_load((out / "prometheus.yml").read_text())
    job = connectivity_job(prometheus)
    assert job["scrape_interval"] == "10s"
    assert job["scrape_timeout"] == "4s"  # under half the interval: time to count the failure
    evaluation = prometheus["global"]["evaluation_interval"]
    assert evaluation == "5s"
    passes(promtool, "check", "config", str(out / "prometheus.yml"))

    rules = out / "rules" / "redis-autoheal.rules.yml"
    groups = yaml.safe_load(rules.read_text())["groups"]
    (down,) = [r for g in groups for r in g["rules"] if r["alert"] == "RedisDown"]
    assert 'count_over_time(redis_up{job="redis-connectivity"}[49s]) >= 5' in down["expr"]
    passes(promtool, "check", "rules", str(rules))
    passes(promtool, "test", "rules", str(out / "tests" / "redis-autoheal.test.yml"))
    hand = out / "hand.test.yml"
    hand.write_text(REDIS_DOWN_AFTER_FIVE.format(evaluation=evaluation))
    passes(promtool, "test", "rules", str(hand))


def test_the_defaults_generate_what_alerts_ships(tmp_path):
    result, out = generate(tmp_path, "{}")
    assert result.returncode == 0, result.stderr
    generated = yaml.safe_load((out / "prometheus.yml").read_text())
    assert generated == yaml.safe_load((ALERTS / "prometheus.yml").read_text())
    for name in ("rules/redis-autoheal.rules.yml", "tests/redis-autoheal.test.yml"):
        assert yaml.safe_load((out / name).read_text()) == yaml.safe_load(
            (ALERTS / name).read_text()
        ), name


@pytest.mark.parametrize(
    ("health_check", "error"),
    [
        (
            "{interval_seconds: 12.5}",
            (
                "health_check.interval_seconds: must be a whole number of seconds, at least 3, "
                "got 12.5"
            ),
        ),
        (
            "{interval_seconds: 2}",
            "health_check.interval_seconds: must be a whole number of seconds, at least 3, got 2",
        ),
        ("{interval_seconds: 30s}", "health_check.interval_seconds: must be a number, got '30s'"),
        ("{failure_threshold: 0}", "health_check.failure_threshold: must be 1-100, got 0"),
        ("{failure_threshold: 2.5}", "health_check.failure_threshold: must be an integer, got 2.5"),
    ],
)
def test_a_bad_value_stops_it_with_one_line_and_writes_nothing(tmp_path, health_check, error):
    result, out = generate(tmp_path, health_check)
    assert result.returncode == 1
    assert result.stderr == f"{tmp_path / 'config.yml'}: {error}\n"
    assert not out.exists()


def test_config_without_out_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(tmp_path / "config.yml")])
    assert exited.value.code == 2
    assert "--config needs --out DIR" in capsys.readouterr().err


def test_the_compose_config_says_what_the_compose_prometheus_and_rules_do():
    # docker/config.yml leaves health_check at its defaults; docker/prometheus/prometheus.yml
    # and the shipped rules (alerts/rules, which the compose stack mounts) must agree with them.
    health = load_settings(ROOT / "docker" / "config.yml").health_check
    compose = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    assert connectivity_job(compose)["scrape_interval"] == f"{health.interval_seconds:g}s"
    groups = yaml.safe_load((ALERTS / "rules" / "redis-autoheal.rules.yml").read_text())["groups"]
    (down,) = [r for g in groups for r in g["rules"] if r["alert"] == "RedisDown"]
    assert down["expr"].endswith(f">= {health.failure_threshold}")
