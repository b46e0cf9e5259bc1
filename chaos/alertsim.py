"""Alertmanager as the remediator sees it, fed by the campaign's view of the host.

Two alert rules watch the samples (the host as Prometheus' probes see it):
- `RedisDown`: no PONG for `FOR_DOWN` seconds (the runbook's 3 failed PINGs, scaled down);
- `RedisServiceDown`: the unit `failed` or `inactive` for `FOR_SERVICE` seconds.
Each alert's `startsAt` is when its condition began, so a new outage is a new alert (a new
fingerprint/startsAt key) and a long one is the same alert repeated. A firing alert is notified
`GROUP_WAIT` after it fires, then every `repeat_interval` while it lasts; once its condition
has been clear for `RESOLVE_AFTER`, a resolved notification follows `GROUP_INTERVAL` later.
One alert per notification (alerts/alertmanager.yml groups by alertname and instance).

Alertmanager's ways, drawn from the sequence's `AlertmanagerPlan`: an HA pair delivers every
notification twice (the second peer a little later); a resolved notification may come 1-4 s
late; a firing repeat may arrive after its resolved one; a delivery answered 5xx, or not
answered (the remediator is down), is retried with backoff for up to `RETRY_FOR` seconds.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis_autoheal.units import STOPPED

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from chaos.plan import AlertmanagerPlan
    from chaos.truth import Sample

FOR_DOWN = 0.5
FOR_SERVICE = 0.3
GROUP_WAIT = 0.3
RESOLVE_AFTER = 0.3
GROUP_INTERVAL = 0.5
RETRY_FOR = 10.0
TICK = 0.05
TARGET = "redis"


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Rule:
    name: str
    fingerprint: str
    condition: Callable[[Sample], bool]
    hold: float
    pending_since: float | None = None
    starts_at: float | None = None  # firing since (its condition's start)
    clear_since: float | None = None
    next_repeat: float = 0.0


@dataclass
class Stats:
    notifications: int = 0  # planned (each peer's copy counts)
    posts: int = 0  # HTTP requests made
    retries: int = 0  # after a 5xx or no answer
    gave_up: int = 0
    refused_4xx: int = 0
    codes: dict[str, int] = field(default_factory=dict)


def alert_json(rule: Rule, starts_at: float, status: str, ends_at: float | None) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": rule.name,
            "instance": TARGET,
            "severity": "critical",
            "remediate": "true",
        },
        "annotations": {"summary": f"{rule.name} on {TARGET}"},
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at) if ends_at else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.chaos/graph",
        "fingerprint": rule.fingerprint,
    }


def notification(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert["labels"]["alertname"]}", instance="{TARGET}"}}',
        "truncatedAlerts": 0,
        "status": alert["status"],
        "receiver": "remediator",
        "groupLabels": {"alertname": alert["labels"]["alertname"], "instance": TARGET},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.chaos",
        "alerts": [alert],
    }


class AlertSim:
    """See the module docstring; `tick()` from one thread, deliveries in their own."""

    def __init__(
        self,
        url: str,
        token: str,
        plan: AlertmanagerPlan,
        rng: random.Random,
        say: Callable[[str], None],
    ) -> None:
        self.url = url
        self.token = token
        self.plan = plan
        self.rng = rng
        self.say = say
        self.rules = [
            Rule("RedisDown", "c0ffee0000000001", lambda s: not s.pong, FOR_DOWN),
            Rule(
                "RedisServiceDown",
                "c0ffee0000000002",
                lambda s: s.state in STOPPED,
                FOR_SERVICE,
            ),
        ]
        self.stats = Stats()
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._inflight = 0
        self._threads: list[threading.Thread] = []

    # --- the rules ------------------------------------------------------------------------

    def tick(self, sample: Sample, now: float) -> None:
        for rule in self.rules:
            self._tick(rule, sample, now)
        self._flush(now)

    def _tick(self, rule: Rule, s: Sample, now: float) -> None:
        if rule.condition(s):
            rule.clear_since = None
            if rule.pending_since is None:
                rule.pending_since = s.t
            if rule.starts_at is None and s.t - rule.pending_since >= rule.hold:
                rule.starts_at = rule.pending_since
                rule.next_repeat = now + GROUP_WAIT
            if rule.starts_at is not None and now >= rule.next_repeat:
                self._notify(now, alert_json(rule, rule.starts_at, "firing", None))
                rule.next_repeat = now + self.plan.repeat_interval
            return
        rule.pending_since = None
        if rule.starts_at is None:
            return
        if rule.clear_since is None:
            rule.clear_since = s.t
        if s.t - rule.clear_since < RESOLVE_AFTER:
            return
        when = now + GROUP_INTERVAL
        if self.rng.random() < self.plan.late_resolved:
            when += self.rng.uniform(1.0, 4.0)
        self._notify(when, alert_json(rule, rule.starts_at, "resolved", rule.clear_since))
        if self.rng.random() < self.plan.reorder:  # a firing repeat overtaken by the resolved
            self._notify(when + 0.3, alert_json(rule, rule.starts_at, "firing", None))
        rule.starts_at = rule.clear_since = None

    def stale_alert(self, now: float) -> None:
        """A firing alert of an outage long over (an old startsAt), resolved a moment later."""
        rule = self.rules[0]
        old = now - 120.0
        self._notify(now, alert_json(rule, old, "firing", None))
        self._notify(now + 0.5, alert_json(rule, old, "resolved", now - 60.0))

    def firing(self) -> bool:
        return any(r.starts_at is not None for r in self.rules)

    def pending(self) -> bool:
        with self._lock:
            return bool(self._queue) or self._inflight > 0

    # --- deliveries -----------------------------------------------------------------------

    def _notify(self, when: float, alert: dict[str, Any]) -> None:
        body = notification(alert)
        copies = [when]
        if self.plan.peers > 1:
            copies.append(when + self.rng.uniform(0.0, self.plan.peer_delay))
        with self._lock:
            for at in copies:
                heapq.heappush(self._queue, (at, next(self._order), body))
                self.stats.notifications += 1

    def _flush(self, now: float) -> None:
        while True:
            with self._lock:
                if not self._queue or self._queue[0][0] > now:
                    return
                _, _, body = heapq.heappop(self._queue)
                self._inflight += 1
            thread = threading.Thread(target=self._deliver, args=(body,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _deliver(self, body: dict[str, Any]) -> None:
        try:
            self._post_with_retries(body)
        finally:
            with self._lock:
                self._inflight -= 1

    def _post_with_retries(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        give_up = time.monotonic() + RETRY_FOR
        backoff = 0.2
        alert = body["alerts"][0]
        what = f"{alert['labels']['alertname']} {alert['status']} {alert['startsAt']}"
        while True:
            code = self._post(data)
            with self._lock:
                self.stats.posts += 1
                self.stats.codes[code] = self.stats.codes.get(code, 0) + 1
            if code == "200":
                return
            if code.startswith("4"):
                with self._lock:
                    self.stats.refused_4xx += 1
                self.say(f"webhook {what}: {code}, not retried")
                return
            if time.monotonic() + backoff > give_up:
                with self._lock:
                    self.stats.gave_up += 1
                self.say(f"webhook {what}: gave up after {RETRY_FOR:g}s ({code})")
                return
            with self._lock:
                self.stats.retries += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _post(self, data: bytes) -> str:
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5.0) as answer:  # noqa: S310
                return str(answer.status)
        except urllib.error.HTTPError as e:
            return str(e.code)
        except (OSError, urllib.error.URLError) as e:
            return f"no answer ({type(e).__name__})"

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
