"""The remediator's metrics, on a registry of its own (one per app, so tests can build many).

Every label set is created up front for each configured target, so a dashboard or an alert rule
sees a 0 before the first event instead of no series at all.

    autoheal_recoveries_total{target="redis",level="hard",result="success"} 1.0
    autoheal_recovery_duration_seconds_bucket{target="redis",level="hard",le="2.5"} 1.0
    autoheal_circuit_breaker_open{target="redis"} 0.0
    autoheal_recovery_exhausted_total{target="redis"} 0.0
    autoheal_operations_total{target="redis",operation="restart",result="success"} 1.0
    autoheal_ssh_commands_total{target="redis",command="is-active",result="success"} 3.0
    autoheal_webhook_requests_total{code="200"} 12.0
    autoheal_security_violations_total{reason="invalid_token"} 0.0
    autoheal_audit_write_errors_total 0.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from redis_autoheal.commands import Action

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

LEVELS = ("soft", "standard", "hard")
RECOVERY_RESULTS = ("success", "failure", "dry_run")
OPERATION_RESULTS = ("success", "failure", "error", "dry_run")
SSH_COMMANDS = (*(a.value for a in Action), "is-active", "status", "journalctl")
SSH_RESULTS = ("success", "failure", "timeout", "error")  # failure: ran, exited non-zero
WEBHOOK_CODES = (200, 400, 401, 403, 405, 413, 415, 422, 500, 503)
VIOLATIONS = (
    "missing_token",
    "invalid_token",
    "address_not_allowed",
    "forbidden_role",
    "command_rejected",
    "host_key",
)
# Recoveries last from under a second (an empty Redis restarting) to minutes (verify + stable).
DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600)


class _BreakerCollector(Collector):
    """`autoheal_circuit_breaker_open`, read from the persisted state at each scrape, so a
    reset made by the `breaker` command shows at once."""

    def __init__(self, targets: Sequence[str], is_open: Callable[[str], bool]) -> None:
        self._targets = targets
        self._is_open = is_open

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "autoheal_circuit_breaker_open",
            "1 while the target's circuit breaker is open and auto-recovery is off",
            labels=["target"],
        )
        for target in self._targets:
            family.add_metric([target], 1.0 if self._is_open(target) else 0.0)
        yield family


class Metrics:
    """The metrics of docs/reference.md, registered on `registry`."""

    def __init__(
        self,
        targets: Iterable[str],
        breaker_open: Callable[[str], bool],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        names = tuple(targets)
        self.recoveries = Counter(
            "autoheal_recoveries",
            "Recovery attempts, by level and result",
            ["target", "level", "result"],
            registry=r,
        )
        self.recovery_duration = Histogram(
            "autoheal_recovery_duration_seconds",
            "Time of one recovery attempt: the command and its verification",
            ["target", "level"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.exhausted = Counter(
            "autoheal_recovery_exhausted",
            "Recoveries that failed at every level: a person must step in",
            ["target"],
            registry=r,
        )
        self.operations = Counter(
            "autoheal_operations",
            "State-changing service operations (start, stop, restart, reload), by result",
            ["target", "operation", "result"],
            registry=r,
        )
        self.ssh_commands = Counter(
            "autoheal_ssh_commands",
            "Whitelisted commands run over SSH, by result",
            ["target", "command", "result"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "autoheal_webhook_requests", "Webhook requests, by HTTP status", ["code"], registry=r
        )
        self.security_violations = Counter(
            "autoheal_security_violations",
            "Rejected tokens, roles, addresses, commands and host keys",
            ["reason"],
            registry=r,
        )
        self.audit_write_errors = Counter(
            "autoheal_audit_write_errors",
            "Audit events that could not be written; their actions did not run",
            registry=r,
        )
        self.coordination_up = Gauge(
            "autoheal_coordination_up",
            "1 while this remediator may act: alone, or its replicas' etcd has quorum for it",
            registry=r,
        )
        r.register(_BreakerCollector(names, breaker_open))
        for t in names:
            self.exhausted.labels(t)
            for level in LEVELS:
                self.recovery_duration.labels(t, level)
                for result in RECOVERY_RESULTS:
                    self.recoveries.labels(t, level, result)
            for op in Action:
                for result in OPERATION_RESULTS:
                    self.operations.labels(t, op.value, result)
            for command in SSH_COMMANDS:
                for result in SSH_RESULTS:
                    self.ssh_commands.labels(t, command, result)
        for code in WEBHOOK_CODES:
            self.webhook_requests.labels(str(code))
        for reason in VIOLATIONS:
            self.security_violations.labels(reason)
