"""dashboards/redis-autoheal.json: structure, variables, queries, thresholds, metric names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.dashboards.dashboard_json import (
    CONTRACT_HISTOGRAMS,
    CONTRACT_METRICS,
    DASHBOARD,
    EXPORTER_METRICS,
    GRAFANA_VARIABLES,
    PROMETHEUS_METRICS,
    REPO,
    dashboard_exprs,
    load_dashboard,
    metric_names,
    panels,
    selectors,
    variables_in,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline"}
MIB = 1024 * 1024
# Remediator metrics that are about the service, not one target: no `target` label.
GLOBAL_REMEDIATOR_METRICS = {
    "autoheal_webhook_requests_total",
    "autoheal_security_violations_total",
    "autoheal_audit_write_errors_total",
}


@pytest.fixture(scope="module")
def dashboard():
    return load_dashboard()


@pytest.fixture(scope="module")
def visible(dashboard):
    return [p for p in panels(dashboard) if p["type"] != "row"]


def _allowed(name: str) -> bool:
    if name in CONTRACT_METRICS or name in PROMETHEUS_METRICS or name in EXPORTER_METRICS:
        return True
    base, _, suffix = name.rpartition("_")
    return base in CONTRACT_HISTOGRAMS and suffix in {"bucket", "sum", "count"}


def test_is_current_schema(dashboard):
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "redis-autoheal"
    assert dashboard["id"] is None, "an exported id would clash on import"
    assert "__inputs" not in dashboard, "a provisioned dashboard cannot ask for inputs"


def test_panel_types(dashboard):
    kinds = {p["type"] for p in panels(dashboard)}
    assert kinds <= PANEL_TYPES, kinds - PANEL_TYPES


def test_ids_are_unique(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_panel_uses_the_datasource_variable(visible):
    for p in visible:
        assert p.get("datasource") == DATASOURCE, p["title"]
        assert p["targets"], f"{p['title']}: no query"
        for t in p["targets"]:
            assert t.get("datasource") == DATASOURCE, f"{p['title']} {t['refId']}"


def test_ref_ids_unique_per_panel(visible):
    for p in visible:
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_panels_fit_the_grid_and_do_not_overlap(dashboard):
    taken: dict[tuple[int, int], str] = {}
    for p in panels(dashboard):
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["w"] >= 1, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = p["title"]


def test_every_panel_says_what_it_shows(visible):
    for p in visible:
        assert p.get("title"), p["id"]
        assert len(p.get("description", "")) > 20, p["title"]


def test_datasource_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"


def test_target_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    target = variables["target"]
    assert target["type"] == "query"
    assert target["datasource"] == DATASOURCE
    assert target["definition"] == "label_values(redis_up, instance)"
    assert target["query"]["query"] == "label_values(redis_up, instance)"
    assert target["multi"] is False, 'queries compare with = "$target"'
    assert target["includeAll"] is False


def test_queries_use_only_known_variables(dashboard):
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    known = defined | {"__rate_interval", "__interval", "__range"}
    assert set(GRAFANA_VARIABLES) >= known - {"datasource"}
    for q in dashboard_exprs(dashboard):
        assert variables_in(q.expr) <= known, q.where


def test_metric_names_are_the_contracts(dashboard):
    used = set()
    for q in dashboard_exprs(dashboard):
        names = metric_names(q.expr)
        assert names, f"{q.where}: no metric in {q.expr!r}"
        unknown = {n for n in names if not _allowed(n)}
        assert not unknown, f"{q.where}: not in docs/reference.md nor documented: {unknown}"
        used |= names
    # Each health layer and the remediation are on the dashboard.
    for name in (
        "redis_up",
        "redis_ping_latency_seconds",
        "redis_systemd_unit_state",
        "redis_ssh_up",
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_connected_clients",
        "redis_config_maxclients",
        "redis_instantaneous_ops_per_sec",
        "redis_rdb_last_save_timestamp_seconds",
        "autoheal_recoveries_total",
        "autoheal_recovery_duration_seconds_bucket",
        "autoheal_circuit_breaker_open",
        "autoheal_recovery_exhausted_total",
        "autoheal_operations_total",
        "redis_probe_duration_seconds",
        "redis_probe_success",
        "up",
    ):
        assert name in used, name


def test_contract_list_matches_the_reference():
    text = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:redis|autoheal)_[a-z_]+)(?:\{[^`]*\})?`", text))
    assert named == set(CONTRACT_METRICS)


def test_exporter_additions_are_still_defined():
    """The dashboard's exporter-only names must exist in exporter/: a rename shows here."""
    sources = "\n".join(
        p.read_text(encoding="utf-8") for p in sorted((REPO / "exporter").glob("*.py"))
    )
    for name in EXPORTER_METRICS:
        # prometheus_client adds _total to a Counter's name itself.
        declared = name.removesuffix("_total")
        assert f'"{declared}"' in sources, f"{name}: no longer defined in exporter/"


def test_probe_series_are_filtered_by_instance_and_remediator_by_target(dashboard):
    for q in dashboard_exprs(dashboard):
        for metric, matchers in selectors(q.expr):
            if metric in GLOBAL_REMEDIATOR_METRICS:
                continue
            if metric.startswith("autoheal_"):
                assert 'target="$target"' in matchers, f"{q.where}: {metric}{{{matchers}}}"
                assert "instance" not in matchers, f"{q.where}: remediator series have target"
            elif metric in CONTRACT_METRICS or metric == "redis_probe_error":
                assert 'instance="$target"' in matchers, f"{q.where}: {metric}{{{matchers}}}"


def _panel_of(visible, expr: str):
    found = [p for p in visible if any(t["expr"] == expr for t in p["targets"])]
    assert len(found) == 1, f"{expr}: {len(found)} panels"
    return found[0]


@pytest.mark.parametrize(
    ("metric", "lines", "unit"),
    [
        ("redis_ping_latency_seconds", [0.005, 0.05], "s"),
        ("redis_memory_used_bytes", [3072 * MIB, 4000 * MIB], "bytes"),
        ("redis_connected_clients", [8000, 9500], "short"),
        ("redis_instantaneous_ops_per_sec", [10000, 50000], "ops"),
    ],
)
def test_runbook_thresholds_are_drawn_as_lines(visible, metric, lines, unit):
    p = _panel_of(visible, f'{metric}{{instance="$target"}}')
    assert p["type"] == "timeseries"
    defaults = p["fieldConfig"]["defaults"]
    assert defaults["unit"] == unit
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    steps = defaults["thresholds"]["steps"]
    assert steps[0]["value"] is None
    assert [s["value"] for s in steps[1:]] == lines
    assert [s["color"] for s in steps[1:]] == ["orange", "red"], "warning, then critical"


@pytest.mark.parametrize(
    ("used", "limit", "line"),
    [
        ("redis_memory_used_bytes", "redis_memory_max_bytes", 75),
        ("redis_connected_clients", "redis_config_maxclients", 80),
    ],
)
def test_percent_of_limit_guards_a_zero_limit(visible, used, limit, line):
    expr = f'100 * {used}{{instance="$target"}} / ({limit}{{instance="$target"}} > 0)'
    p = _panel_of(visible, expr)
    defaults = p["fieldConfig"]["defaults"]
    assert defaults["unit"] == "percent"
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [s["value"] for s in defaults["thresholds"]["steps"][1:]] == [line]


def test_every_division_is_guarded(dashboard):
    for q in dashboard_exprs(dashboard):
        for divisor in re.findall(r"/\s*(.+)", q.expr):
            assert divisor.startswith("("), f"{q.where}: / {divisor}"
            assert "> 0)" in divisor, f"{q.where}: / {divisor}"


def test_time_since_last_rdb_save(visible):
    p = _panel_of(visible, 'time() - redis_rdb_last_save_timestamp_seconds{instance="$target"}')
    assert p["fieldConfig"]["defaults"]["unit"] == "s"


def test_unit_state_shows_all_six_states(visible):
    states = ("active", "reloading", "inactive", "failed", "activating", "deactivating")
    timelines = [
        p
        for p in visible
        if p["type"] == "state-timeline"
        and any("redis_systemd_unit_state" in t["expr"] for t in p["targets"])
    ]
    assert len(timelines) == 1
    p = timelines[0]
    (expr,) = (t["expr"] for t in p["targets"])
    for state in states:
        assert f'state="{state}"' in expr
    mapped = {
        m["text"]
        for mapping in p["fieldConfig"]["defaults"]["mappings"]
        if mapping["type"] == "value"
        for m in mapping["options"].values()
    }
    assert mapped == set(states)


def test_recovery_panels(visible):
    exprs = [t["expr"] for p in visible for t in p["targets"]]
    assert any("sum by (level, result)" in e and "autoheal_recoveries_total" in e for e in exprs)
    for q in ("0.5", "0.95"):
        assert any(
            e.startswith(f"histogram_quantile({q}, sum by (le, level)")
            and "autoheal_recovery_duration_seconds_bucket" in e
            for e in exprs
        ), q


def test_operations_say_where_users_are(visible):
    ops = [
        p for p in visible if any("sum by (operation, result)" in t["expr"] for t in p["targets"])
    ]
    assert len(ops) == 1
    assert "audit log" in ops[0]["description"]


def test_exporter_and_remediator_up(visible):
    exprs = [t["expr"] for p in visible for t in p["targets"]]
    assert 'up{job=~"redis-autoheal.*"}' in exprs


def test_json_is_formatted_as_committed():
    """Two-space JSON with a final newline, as Grafana exports it: clean diffs."""
    import json  # noqa: PLC0415

    text = DASHBOARD.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job=~"a.*"}', {"up"}),
        ('sum by (level, result) (increase(x_total{t="$t"}[$__range])) > 0', {"x_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
        ('time() - last_save{instance="a"}', {"last_save"}),
        ("a / on (instance) group_left (role) b offset 5m", {"a", "b"}),
        ('{__name__="by_name"} * 1e3', {"by_name"}),
        ('max by (instance) (2 * (s{state="or"} == 1) or 3 * (s{state="and"} == 1))', {"s"}),
    ],
)
def test_metric_name_extraction(expr, names):
    assert metric_names(expr) == names


def test_dashboard_path_is_the_one_provisioning_mounts():
    assert Path("dashboards/redis-autoheal.json") == DASHBOARD.relative_to(REPO)


def test_threshold_lines_follow_the_alert_rules(visible):
    """The lines are where the alerts fire: alerts/thresholds.yml is the one place to change
    a threshold, and then this test says which panel to move with it."""
    thresholds = yaml.safe_load((REPO / "alerts/thresholds.yml").read_text(encoding="utf-8"))
    alerts = thresholds["alerts"]

    def lines(expr: str) -> list[float]:
        p = _panel_of(visible, expr)
        return [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]

    ping = alerts["RedisPingLatencyHigh"]
    assert lines('redis_ping_latency_seconds{instance="$target"}') == [
        ping["warning_ms"] / 1000,
        ping["critical_ms"] / 1000,
    ]
    memory = alerts["RedisMemoryHigh"]
    assert lines('redis_memory_used_bytes{instance="$target"}') == [
        memory["warning_mb"] * MIB,
        memory["critical_mb"] * MIB,
    ]
    for metric, alert in (
        ("redis_connected_clients", "RedisClientsHigh"),
        ("redis_instantaneous_ops_per_sec", "RedisOpsHigh"),
    ):
        band = alerts[alert]
        assert lines(f'{metric}{{instance="$target"}}') == [band["warning"], band["critical"]]
    for used, limit, alert in (
        ("redis_memory_used_bytes", "redis_memory_max_bytes", "RedisMemoryNearMax"),
        ("redis_connected_clients", "redis_config_maxclients", "RedisClientsNearMax"),
    ):
        expr = f'100 * {used}{{instance="$target"}} / ({limit}{{instance="$target"}} > 0)'
        assert lines(expr) == [alerts[alert]["above_percent"]]
    burst = alerts["RedisOperationsBurst"]
    assert burst["within"] == "1m"
    assert lines('sum(increase(autoheal_operations_total{target="$target"}[1m]))') == [
        burst["operations"]
    ]
