"""The whole stack with the exporter following the unit (exporter.follow).

- At the production settings (alerts/ exactly as shipped: systemd scraped every 60 s), a
  kill -9 is healed through the pushed RedisServiceFailed: the remediator acts on it before
  the systemd rule could have fired. How fast is bench/e2e_recovery.py's to measure. Prometheus
  sees the unit followed, on the very series the unit-state rules stand down for.
- With Alertmanager unreachable for the exporter's pushes, the unit is not followed in
  Prometheus' eyes and the rule still heals a kill -9.
- A stop through the operator API is not undone: the pushed RedisServiceInactive reaches the
  remediator, which suppresses it (the stop opened the breaker), and the unit stays stopped.
"""

from __future__ import annotations

import re
import time
import urllib.request

from demo.configs import TARGET, shipped_cadence
from demo.loopback import free_port, post_json
from demo.timeline import parse_time
from tests.support import HANG

SYSTEMD_INTERVAL = 60.0  # the shipped systemd scrape interval: a new sample at most this late
# The unit-state rules' `unless` clause, matched against the active unit: non-empty while the
# rules stand down for it.
FOLLOWED_UNIT = (
    'redis_systemd_unit_state{job="redis-systemd", state="active"} == 1 '
    'and on(instance, unit) redis_systemd_unit_followed{job="redis-systemd"} == 1'
)


def _webhook_decisions(stack, alertname: str, since: float) -> list[str]:
    """What the remediator did with each firing `alertname` delivered since `since`."""
    return [
        a["disposition"]
        for e in stack.audit_events()
        if e.get("event_type") == "webhook" and parse_time(str(e["timestamp"])) >= int(since)
        for a in e.get("alerts", [])
        if a.get("alertname") == alertname and a.get("status") == "firing"
    ]


def test_kill9_heals_at_production_settings_through_the_pushed_alert(make_stack):
    stack = make_stack(cadence=shipped_cadence(), follow=True)
    host = stack.host
    origin = time.time()
    host.kill9()
    stack.wait_for(lambda: host.ping(timeout=0.5), 2 * HANG, "Redis to answer PING again")
    stack.wait_for(
        lambda: "recovery_started" in _webhook_decisions(stack, "RedisServiceFailed", origin),
        HANG,
        "the remediator's decision on RedisServiceFailed",
    )
    assert [i.verb for i in host.invocations() if i.ts >= origin] == ["restart"]
    assert _pushes(stack, "success") >= 1
    stack.wait_for(
        lambda: bool(stack.prom_query(FOLLOWED_UNIT)),
        SYSTEMD_INTERVAL + HANG,
        "Prometheus to see the unit followed (the unit-state rules stand down)",
    )


def _pushes(stack, result: str) -> float:
    with urllib.request.urlopen(f"{stack.url('exporter')}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    line = rf'^redis_autoheal_exporter_alert_pushes_total\{{result="{result}"\}} (\S+)$'
    found = re.search(line, metrics, re.MULTILINE)
    assert found is not None
    return float(found[1])


def test_the_rule_heals_when_pushes_cannot_reach_alertmanager(make_stack):
    stack = make_stack(follow=True, follow_push_to=f"http://127.0.0.1:{free_port()}")
    host = stack.host
    origin = time.time()
    host.kill9()
    stack.wait_for(lambda: _pushes(stack, "error") >= 1, HANG, "a push that failed")
    assert stack.prom_query('redis_systemd_unit_followed{job="redis-systemd"} == 0')
    stack.wait_for(lambda: host.ping(timeout=0.5), 2 * HANG, "Redis to answer PING again")
    assert "recovery_started" in _webhook_decisions(stack, "RedisServiceFailed", origin)
    assert _pushes(stack, "success") == 0


def test_a_stop_through_the_operator_api_is_not_undone(make_stack):
    stack = make_stack(follow=True)
    host = stack.host
    token = (stack.workdir / "secrets" / "admin.token").read_text().strip()
    origin = time.time()
    status = post_json(
        f"{stack.url('remediator')}/api/services/{TARGET}/stop",
        {},
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 200
    assert host.unit_state() == "inactive"
    stack.wait_for(
        lambda: bool(_webhook_decisions(stack, "RedisServiceInactive", origin)),
        HANG,
        "the pushed RedisServiceInactive to reach the remediator",
    )
    assert set(_webhook_decisions(stack, "RedisServiceInactive", origin)) == {
        "suppressed_circuit_open"
    }
    assert host.unit_state() == "inactive"
    assert [i.verb for i in host.invocations() if i.ts >= origin] == ["stop"]
