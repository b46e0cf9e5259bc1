"""Reads dashboards/redis-autoheal.json, the single source of the dashboard's queries.

Other tests (the full-stack one) can use `dashboard_exprs()` to run every query against a
real Prometheus, after `substitute()` has replaced Grafana's variables with concrete values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import contract

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "redis-autoheal.json"

# The public metric names of docs/reference.md (test_contract_list_matches_the_reference checks
# this copy against it).
CONTRACT_METRICS = contract.ALL
CONTRACT_HISTOGRAMS = contract.REMEDIATOR_HISTOGRAMS

# Names the dashboard uses beyond the contract, each with where it comes from.
PROMETHEUS_METRICS = {
    "up": "Prometheus: 1 if the last scrape of the target succeeded",
    "ALERTS": "Prometheus: one series per pending or firing alert",
}
# The exporter's additions (exporter/collector.py and exporter/selfmetrics.py): the test
# checks each is still defined there, so a rename breaks this test, not the dashboard silently.
EXPORTER_METRICS = {
    "redis_probe_error": "per probe: 1 for a failed layer, with its reason",
    "redis_autoheal_exporter_probes_total": "the exporter's /metrics: probes answered",
    "redis_autoheal_exporter_layer_failures_total": "the exporter's /metrics: failed layers",
}

# Grafana's variables, replaced by values a plain Prometheus accepts.
GRAFANA_VARIABLES = {
    "target": "redis",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "6h",
}

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@dataclass(frozen=True)
class Query:
    """One PromQL query of the dashboard and where it is."""

    where: str  # "panel 12 'PING latency' A", or "annotation 'Recoveries'"
    expr: str
    panel_id: int | None
    ref_id: str


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[Query]:
    """Every PromQL query: panel targets, then annotations (not the variable's query)."""
    dashboard = load_dashboard() if dashboard is None else dashboard
    queries = [
        Query(f"panel {p['id']} {p.get('title')!r} {t['refId']}", t["expr"], p["id"], t["refId"])
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]
    queries.extend(
        Query(f"annotation {a['name']!r}", a["expr"], None, a["name"])
        for a in dashboard["annotations"]["list"]
        if "expr" in a
    )
    return queries


def substitute(expr: str, values: dict[str, str] = GRAFANA_VARIABLES) -> str:
    """Replace `$name` and `${name}` with concrete values; KeyError names an unknown one."""
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def variables_in(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in _VARIABLE.finditer(expr)}


# A small PromQL tokenizer, enough to list the metric names a query reads: blank out strings,
# label matchers, ranges, grouping clauses, numbers and durations (keeping every offset), then
# every identifier left that is not a function call or a keyword is a metric name.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHER_BODY = re.compile(r"(?<=\{)[^{}]*(?=\})")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[a-z]*)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "group_left", "group_right"}
)


def _blank(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda m: " " * len(m.group()), text)


def _metric_tokens(expr: str) -> list[re.Match[str]]:
    text = expr
    for pattern in (_STRING, _MATCHER_BODY, _RANGE, _GROUPING, _NUMBER):
        text = _blank(pattern, text)
    return [
        m
        for m in _IDENTIFIER.finditer(text)
        if not text[m.end() :].lstrip().startswith("(") and m.group().lower() not in _KEYWORDS
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` reads, written bare (`up`) or as `{__name__="up"}`."""
    names = {m.group() for m in _metric_tokens(expr)}
    return names | set(re.findall(r'__name__\s*=~?\s*"([^"]+)"', expr))


def selectors(expr: str) -> list[tuple[str, str]]:
    """Each `metric{matchers}` of `expr` as (metric, matchers); matchers may be empty."""
    out = []
    for m in _metric_tokens(expr):
        rest = expr[m.end() :]
        stripped = rest.lstrip()
        matchers = ""
        if stripped.startswith("{"):
            start = m.end() + len(rest) - len(stripped) + 1
            matchers = expr[start : expr.index("}", start)]
        out.append((m.group(), matchers))
    return out
