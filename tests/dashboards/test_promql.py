"""Every dashboard query parses (promtool), and the tricky ones compute what the panel says.

promtool cannot check a bare expression, so each query becomes a recording rule in a temporary
rules file for `promtool check rules`; `promtool test rules` then evaluates a few of them on
synthetic series.
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest
import yaml

from tests.dashboards.dashboard_json import dashboard_exprs, substitute
from tests.support import require_binary


@pytest.fixture(scope="module")
def queries():
    return {q.where: substitute(q.expr) for q in dashboard_exprs()}


def _record_name(i: int) -> str:
    return f"dashboard:query_{i}"


def test_every_query_parses(promtool, queries, tmp_path):
    rules = [{"record": _record_name(i), "expr": e} for i, e in enumerate(queries.values())]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    where = dict(zip((_record_name(i) for i in range(len(queries))), queries, strict=True))
    detail = done.stdout + done.stderr
    for record, place in where.items():
        detail = detail.replace(record, f"{record} ({place})")
    assert done.returncode == 0, detail
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


def _query(queries, title_part: str) -> str:
    found = [e for where, e in queries.items() if title_part in where]
    assert found, title_part
    return found[0]


def _run_rule_tests(promtool, tmp_path, tests: list[dict]) -> None:
    path = tmp_path / "dashboard.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    done = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating")


@pytest.mark.parametrize("current", STATES)
def test_unit_state_code(promtool, queries, tmp_path, current):
    """The state panels show the state that is 1 as its code: active 1 ... deactivating 6."""
    expr = _query(queries, "'Unit state' A")
    series = [
        {
            "series": f'redis_systemd_unit_state{{instance="redis",unit="redis-server",'
            f'state="{s}",job="redis-systemd"}}',
            "values": "1x3" if s == current else "0x3",
        }
        for s in STATES
    ]
    code = STATES.index(current) + 1
    test = {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {
                "expr": expr,
                "eval_time": "2m",
                "exp_samples": [{"labels": '{instance="redis"}', "value": code}],
            }
        ],
    }
    _run_rule_tests(promtool, tmp_path, [test])


def test_unit_state_unknown_is_empty(promtool, queries, tmp_path):
    """All six 0 (state unknown, SSH down) shows no value, not a wrong state."""
    expr = _query(queries, "'Unit state' A")
    series = [
        {"series": f'redis_systemd_unit_state{{instance="redis",state="{s}"}}', "values": "0x3"}
        for s in STATES
    ]
    test = {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "2m", "exp_samples": []}],
    }
    _run_rule_tests(promtool, tmp_path, [test])


@pytest.mark.parametrize(
    "case",
    [
        ("% of maxmemory", "redis_memory_used_bytes", "redis_memory_max_bytes"),
        ("% of maxclients", "redis_connected_clients", "redis_config_maxclients"),
    ],
)
def test_percent_of_limit(promtool, queries, tmp_path, case):
    """A limit of 0 (no limit) gives no percentage instead of +Inf."""
    title, used, limit = case
    expr = _query(queries, title)
    with_limit = {
        "interval": "1m",
        "input_series": [
            {"series": f'{used}{{instance="redis"}}', "values": "300x3"},
            {"series": f'{limit}{{instance="redis"}}', "values": "400x3"},
        ],
        "promql_expr_test": [
            {
                "expr": expr,
                "eval_time": "2m",
                "exp_samples": [{"labels": '{instance="redis"}', "value": 75}],
            }
        ],
    }
    no_limit = {
        "interval": "1m",
        "input_series": [
            {"series": f'{used}{{instance="redis"}}', "values": "300x3"},
            {"series": f'{limit}{{instance="redis"}}', "values": "0x3"},
        ],
        "promql_expr_test": [{"expr": expr, "eval_time": "2m", "exp_samples": []}],
    }
    _run_rule_tests(promtool, tmp_path, [with_limit, no_limit])


def test_recoveries_by_level_and_result_only_for_the_target(promtool, queries, tmp_path):
    expr = _query(queries, "'Recoveries in range'")
    test = {
        "interval": "1m",
        "input_series": [
            {
                "series": 'autoheal_recoveries_total{target="redis",level="hard",result="success"}',
                "values": "0 0 1 1 2",
            },
            {
                "series": 'autoheal_recoveries_total{target="other",level="hard",result="success"}',
                "values": "0 5 10 15 20",
            },
        ],
        "promql_expr_test": [
            {
                "expr": expr,
                "eval_time": "4m",
                "exp_samples": [{"labels": '{level="hard",result="success"}', "value": 2}],
            }
        ],
    }
    _run_rule_tests(promtool, tmp_path, [test])


def test_the_rules_file_is_what_promtool_expects(tmp_path):
    """Guard the helper itself: a broken query must fail, not be skipped."""
    bad = textwrap.dedent(
        """\
        groups:
          - name: g
            rules:
              - record: dashboard:query_0
                expr: sum by (x (up)
        """
    )
    path = tmp_path / "bad.yml"
    path.write_text(bad)
    done = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
