"""Every PromQL query of dashboards/redis-autoheal.json returns data from the real Prometheus
of a stack that has been through an outage (a kill -9 healed by the remediator) and a refused
webhook (for the security panels): the metric names, labels and jobs the dashboard expects are
the ones the exporter, the remediator and the rules really produce."""

from __future__ import annotations

import math
import time

import pytest

from demo import scenario
from demo.stack import Stack
from tests.dashboards.dashboard_json import dashboard_exprs, substitute
from tests.support import HANG

pytestmark = pytest.mark.root


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    outcome = scenario.run(stack, "kill9")
    assert outcome.problem is None, outcome.timeline.render()
    refused = stack.post_webhook(token="not-the-token")  # a refused call: the security panels
    assert refused == 401
    # Prometheus has stored a scrape of the remediator that shows the refusal, so one taken
    # after all the outage did.
    stack.wait_for(
        lambda: bool(stack.prom_query('autoheal_webhook_requests_total{code="401"} > 0')),
        HANG,
        "Prometheus to scrape the refused webhook call",
    )
    # Evaluate up to a little past now: the range then has steps after that scrape (a range
    # ending now may end just before it).
    end = time.time() + 5

    empty = []
    queries = dashboard_exprs()
    assert len(queries) > 30
    for query in queries:
        expr = substitute(query.expr)
        result = stack.prom_query_range(expr, stack.started_at, end, step=1)
        values = [float(v) for series in result for _, v in series["values"]]
        if not any(not math.isnan(v) for v in values):
            empty.append(f"{query.where}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
