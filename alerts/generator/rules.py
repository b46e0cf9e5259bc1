"""The alerting rules: what each alert watches and what it tells on-call to do.

Thresholds and delays come from thresholds.yml; everything else about an alert is here. The
annotation templates use only `{{ $labels.NAME }}`, `{{ printf "%.Nf" $value }}` and
`{{ $value | humanizeDuration }}`, which `gotemplate.render` can expand for the promtool tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from redis_autoheal.thresholds import Thresholds, format_duration

Severity = Literal["info", "warning", "critical"]

# Job names of prometheus.yml. Every selector names its job, so the same metric names from
# another exporter (redis_exporter exports redis_up too) never trigger a remediation.
PROBE_JOBS = {
    "connectivity": "redis-connectivity",
    "systemd": "redis-systemd",
    "performance": "redis-performance",
}
EXPORTER_JOB = "redis-autoheal-exporter"
REMEDIATOR_JOB = "redis-autoheal-remediator"

MAINTENANCE = "Sunday 02:00-04:00 UTC weekly, 01:00-05:00 UTC on the first Sunday of the month"


@dataclass(frozen=True)
class Rule:
    """One alerting rule as it appears in the rules file."""

    alert: str
    severity: Severity
    expr: str
    summary: str
    description: str
    anchor: str  # the runbook section, appended to runbook_url
    for_seconds: int = 0
    keep_firing_seconds: int = 0  # bridges an evaluation that sees one sample too few
    layer: str | None = None
    remediate: bool = False
    comment: str = ""  # why the expression reads as it does; a YAML comment above the rule

    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = {"severity": self.severity}
        if self.layer:
            labels["layer"] = self.layer
        if self.remediate:
            labels["remediate"] = "true"
        return labels

    def annotations(self, runbook_url: str) -> dict[str, str]:
        return {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{runbook_url}#{self.anchor}",
        }


@dataclass(frozen=True)
class Group:
    name: str
    rules: list[Rule] = field(default_factory=list)


def num(value: Decimal | int) -> str:
    """A threshold as people write it: 5, 0.5, 3072 (no exponent, no trailing zeros)."""
    return format(Decimal(value).normalize(), "f")


def _lines(*lines: str) -> str:
    return "\n".join(lines)


def _counted(metric: str, count: int, interval: int) -> tuple[str, str]:
    """An expression true while the last `count` samples of `metric` are all 0, and its comment.

    A window of `count` scrape intervals less 1 s holds exactly the last `count` samples.
    `for:` cannot count samples: Prometheus evaluates rules out of step with the scrapes, so
    `for: 1m` at a 30 s interval could fire after 2 samples (the 3rd scrape still running) or
    need 4. The rule also needs `keep_firing_for` of one interval: while the scrape of a hung
    target waits for its timeout, an evaluation sees only `count - 1` samples in the window;
    without it the alert would resolve there and fire again with a new startsAt, and each
    resolution stops the remediator's escalation.
    """
    window = format_duration(count * interval - 1)
    expr = _lines(
        f"max_over_time({metric}[{window}]) == 0",
        f"and count_over_time({metric}[{window}]) >= {count}",
    )
    comment = (
        f"The last {count} samples all 0: a {window} window holds exactly the last {count} "
        f"samples at a {interval}s interval. Not `for:`, which cannot count samples when rule "
        "evaluation is out of step with the scrapes. A missed scrape counts as no sample."
    )
    return expr, comment


def _by_target(expr: str) -> str:
    """Copy the remediator's `target` label into `instance`, as the probe alerts have it."""
    return f'label_replace(\n  {expr},\n  "instance", "$1", "target", "(.*)"\n)'


def connectivity(t: Thresholds) -> Group:
    job = PROBE_JOBS["connectivity"]
    down = t["RedisDown"]
    pings = down.count("failed_pings")
    interval = t.intervals["connectivity"]
    expr, comment = _counted(f'redis_up{{job="{job}"}}', pings, interval)
    redis_down = Rule(
        alert="RedisDown",
        severity="critical",
        remediate=True,
        layer="connectivity",
        expr=expr,
        keep_firing_seconds=interval,
        comment=comment,
        anchor="recovery-decision-logic",
        summary=f"Redis {{{{ $labels.instance }}}} is down: {pings} PINGs in a row failed",
        description=_lines(
            f"Redis on {{{{ $labels.instance }}}} did not answer PING {pings} times in a row "
            f"(one PING every {interval}s).",
            "The remediator is recovering it: reload if the unit is active, start if it is "
            "inactive, restart if it failed, up to auto_recovery.max_attempts attempts "
            "(runbook: Recovery Decision Logic).",
            "On-call is paged only when it still fires after auto-recovery's grace period: "
            "then recovery has not worked. Look for RedisAutoRecoveryFailed and "
            "RedisRecoveryCircuitOpen, then follow Procedure 1 (Manual Service Start): "
            "systemctl status and journalctl -n 50 of the Redis unit, Decision Tree 1 (Service "
            "Won't Start).",
            f"In a maintenance window ({MAINTENANCE}) the remediator is muted: this page is "
            "for you.",
        ),
    )
    latency = t["RedisPingLatencyHigh"]
    warn, crit = latency.number("warning_ms"), latency.number("critical_ms")
    near_memory = num(t["RedisMemoryNearMax"].number("above_percent"))
    near_clients = num(t["RedisClientsNearMax"].number("above_percent"))
    bands = (
        f"runbook: normal below {num(warn)} ms, warning {num(warn)}-{num(crit)} ms, "
        f"critical above {num(crit)} ms; the SLA is under {num(warn)} ms"
    )
    tree = (
        "Follow Decision Tree 2 (Performance Degradation): memory pressure (RedisMemoryNearMax, "
        f"above {near_memory} % of maxmemory), connection pressure (RedisClientsNearMax, above "
        f"{near_clients} % of maxclients), CPU (above 70 %: redis-cli SLOWLOG GET 10 shows "
        "expensive commands), network latency (above 10 ms: connectivity, packet loss, "
        "firewall rules)."
    )
    metric = f'redis_ping_latency_seconds{{job="{job}"}}'
    seconds = Decimal(1000)

    def latency_rule(severity: Severity, op: str, ms: Decimal, extra: tuple[str, ...]) -> Rule:
        word = "from" if op == ">=" else "above"
        return Rule(
            alert="RedisPingLatencyHigh",
            severity=severity,
            layer="performance",
            for_seconds=latency.seconds("for"),
            expr=f"{metric} {op} {num(ms / seconds)}",
            comment=f"{num(ms / seconds)} s = {num(ms)} ms",
            anchor="decision-tree-2-performance-degradation",
            summary=(
                "Redis {{ $labels.instance }} PING latency is {{ $value | humanizeDuration }} "
                f"({severity} {word} {num(ms)} ms)"
            ),
            description=_lines(
                "PINGs to Redis on {{ $labels.instance }} take {{ $value | humanizeDuration }} "
                f"({bands}).",
                tree,
                *extra,
            ),
        )

    return Group(
        "redis-connectivity",
        [
            redis_down,
            latency_rule("warning", ">=", warn, ()),
            latency_rule(
                "critical",
                ">",
                crit,
                (
                    (
                        "Dependent services are affected: consider manual intervention "
                        "(Procedure 2: Manual Service Restart) once the cause is known."
                    ),
                ),
            ),
        ],
    )


def _unless_followed(state: str, job: str) -> tuple[str, str]:
    """The unit is in `state`, unless the exporter follows it and pushes its alert itself."""
    expr = (
        f'redis_systemd_unit_state{{job="{job}", state="{state}"}} == 1 '
        f'unless on(instance, unit) redis_systemd_unit_followed{{job="{job}"}} == 1'
    )
    comment = (
        "While the exporter follows the unit and its pushes are taken, the push is this "
        "alert's source (the same labels, at once): a scrape that caught a short outage "
        "would fire it after the push healed it, hold it firing in Alertmanager, and the "
        "next outage's push would then raise no notification. The rule is the safety net "
        "whenever redis_systemd_unit_followed is 0 or absent."
    )
    return expr, comment


def systemd(t: Thresholds) -> Group:
    job = PROBE_JOBS["systemd"]
    inactive_expr, followed_comment = _unless_followed("inactive", job)
    failed_expr, _ = _unless_followed("failed", job)
    unit = "{{ $labels.unit }}"
    where = f"{unit} on {{{{ $labels.instance }}}}"
    journal = f"journalctl -u {unit} -n 50 --no-pager"
    silence = (
        "Stopping Redis on purpose? Silence remediation first: "
        "amtool silence add remediate=true instance={{ $labels.instance }}"
    )
    inactive = Rule(
        alert="RedisServiceInactive",
        severity="critical",
        remediate=True,
        layer="systemd",
        for_seconds=t["RedisServiceInactive"].seconds("for"),
        expr=inactive_expr,
        comment=followed_comment,
        anchor="level-2-standard-recovery",
        summary=f"Redis unit {where} is inactive",
        description=_lines(
            f"systemd reports {where} inactive: the service is stopped.",
            "The remediator runs standard recovery (systemctl start) and escalates to a restart "
            "if that fails (runbook: Level 2, Standard Recovery).",
            f"If it stays down, find out why it stopped ({journal}) and follow Procedure 1 "
            "(Manual Service Start) and Decision Tree 1 (Service Won't Start).",
            silence,
        ),
    )
    failed = Rule(
        alert="RedisServiceFailed",
        severity="critical",
        remediate=True,
        layer="systemd",
        for_seconds=t["RedisServiceFailed"].seconds("for"),
        expr=failed_expr,
        comment=followed_comment,
        anchor="level-3-hard-recovery",
        summary=f"Redis unit {where} has failed",
        description=_lines(
            f"systemd reports {where} failed: the service crashed or failed to start.",
            "The remediator runs hard recovery (systemctl restart; runbook: Level 3, Hard "
            "Recovery).",
            f"If it fails again, look for the reason in {journal} and "
            "/var/log/redis/redis-server.log and follow Decision Tree 1 (Service Won't Start): "
            "address already in use, permission denied, configuration error, out of memory, "
            'disk full. "Invalid RDB format" is Disaster Recovery Scenario 1 (Data Corruption).',
            silence,
        ),
    )
    stuck_for = t["RedisServiceTransitionStuck"].seconds("for")
    stuck = Rule(
        alert="RedisServiceTransitionStuck",
        severity="warning",
        layer="systemd",
        for_seconds=stuck_for,
        expr=f'redis_systemd_unit_state{{job="{job}", state=~"activating|deactivating"}} == 1',
        anchor="decision-tree-3-auto-recovery-failing",
        summary=(
            f"Redis unit {where} has been {{{{ $labels.state }}}} for over "
            f"{format_duration(stuck_for)}"
        ),
        description=_lines(
            f"{where} has been {{{{ $labels.state }}}} for more than "
            f"{format_duration(stuck_for)} (startup normally takes 8-15 s, shutdown 5-10 s). "
            "Auto-recovery waits while a unit is in transition.",
            f"Decision Tree 3: check systemctl status {unit} and {journal} for startup issues "
            "(loading a large RDB or AOF file takes time, a stop may hang on a save).",
        ),
    )
    ssh = t["RedisSshUnreachable"]
    probes = ssh.count("failed_probes")
    expr, comment = _counted(f'redis_ssh_up{{job="{job}"}}', probes, t.intervals["systemd"])
    unreachable = Rule(
        alert="RedisSshUnreachable",
        severity="critical",
        layer="systemd",
        expr=expr,
        keep_firing_seconds=t.intervals["systemd"],
        comment=comment,
        anchor="decision-tree-3-auto-recovery-failing",
        summary=(
            "Cannot SSH to the Redis host of {{ $labels.instance }}: auto-recovery is impossible"
        ),
        description=_lines(
            "The systemd probe failed to log in over SSH to the host of {{ $labels.instance }} "
            f"{probes} times in a row, so the remediator cannot run systemctl there.",
            "While this fires, the remediation alerts of {{ $labels.instance }} (RedisDown, "
            "RedisServiceInactive, RedisServiceFailed) are inhibited: a Redis failure there "
            "needs a person. Check whether Redis still answers (redis-cli PING, redis_up).",
            "Decision Tree 3, SSH connectivity: is the VM up (Disaster Recovery Scenario 2, VM "
            "Failure), is sshd running, does the key still work (~/.ssh/autobot_key, mode "
            "600), does known_hosts still match the host key?",
        ),
    )
    return Group("redis-systemd", [inactive, failed, stuck, unreachable])


@dataclass(frozen=True)
class _Band:
    alert: str
    metric: str  # the PromQL whose value is compared, in the runbook's unit
    unit: str  # as written after a number in the text ("" for plain counts)
    what: str  # a sentence about the value, with {value} and {where}
    actions: str
    critical_extra: str
    anchor: str = "layer-3-performance-health"


def _band_rules(t: Thresholds, band: _Band, low: str, high: str) -> list[Rule]:
    settings = t[band.alert]
    warn, crit = settings.number(low), settings.number(high)

    def amount(value: Decimal) -> str:
        return f"{num(value)}{band.unit}"

    scale = (
        f"runbook: normal below {amount(warn)}, warning {num(warn)}-{amount(crit)}, "
        f"critical above {amount(crit)}"
    )
    value = '{{ printf "%.0f" $value }}'
    where = "Redis on {{ $labels.instance }}"
    rules = []
    levels: tuple[tuple[Severity, str, Decimal], ...] = (
        ("warning", ">=", warn),
        ("critical", ">", crit),
    )
    for severity, op, threshold in levels:
        word = "from" if op == ">=" else "above"
        extra = (band.critical_extra,) if severity == "critical" else ()
        rules.append(
            Rule(
                alert=band.alert,
                severity=severity,
                layer="performance",
                for_seconds=settings.seconds("for"),
                expr=f"{band.metric} {op} {num(threshold)}",
                anchor=band.anchor,
                summary=(
                    f"{band.what.format(value=value, where='Redis {{ $labels.instance }}')} "
                    f"({severity} {word} {amount(threshold)})"
                ),
                description=_lines(
                    f"{band.what.format(value=value, where=where)} ({scale}).",
                    band.actions,
                    *extra,
                ),
            )
        )
    return rules


def performance(t: Thresholds) -> Group:
    job = PROBE_JOBS["performance"]

    def metric(name: str) -> str:
        return f'{name}{{job="{job}"}}'

    memory = _Band(
        alert="RedisMemoryHigh",
        metric=f"{metric('redis_memory_used_bytes')} / 1024 / 1024",
        unit=" MB",
        what="{where} uses {value} MB of memory",
        actions=(
            "Decision Tree 2, memory pressure: identify large keys (redis-cli --bigkeys), "
            "implement key expiration, consider increasing memory (Procedure 3: Configuration "
            "Change, maxmemory)."
        ),
        critical_extra=(
            "Close to maxmemory Redis evicts keys or refuses writes, and the host may run out "
            "of memory: act now."
        ),
    )
    clients = _Band(
        alert="RedisClientsHigh",
        metric=metric("redis_connected_clients"),
        unit="",
        what="{value} clients are connected to {where}",
        actions=(
            "Decision Tree 2, connection pressure: identify the connection sources (redis-cli "
            "CLIENT LIST), implement connection pooling, increase maxclients."
        ),
        critical_extra=(
            "New connections will soon be refused (watch redis_rejected_connections_total)."
        ),
    )
    ops = _Band(
        alert="RedisOpsHigh",
        metric=metric("redis_instantaneous_ops_per_sec"),
        unit=" ops/s",
        what="{where} serves {value} commands per second",
        actions=(
            "Find the clients and commands behind the load (redis-cli CLIENT LIST, redis-cli "
            "SLOWLOG GET 10) and optimise them (Decision Tree 2, CPU bottleneck)."
        ),
        critical_extra=(
            "A rate this high may be an attack: check the sources, and follow Security "
            "Monitoring if they are not expected."
        ),
    )
    percent = '{{ printf "%.2f" $value }}'
    near_memory = t["RedisMemoryNearMax"]
    memory_pct = num(near_memory.number("above_percent"))
    near_clients = t["RedisClientsNearMax"]
    clients_pct = num(near_clients.number("above_percent"))
    ratio_comment = (
        "`> 0` drops a zero limit (0 = no maxmemory) instead of dividing by it: x / 0 is +Inf."
    )
    memory_near_max = Rule(
        alert="RedisMemoryNearMax",
        severity="warning",
        layer="performance",
        for_seconds=near_memory.seconds("for"),
        expr=(
            f"100 * {metric('redis_memory_used_bytes')}\n"
            f"  / ({metric('redis_memory_max_bytes')} > 0)\n"
            f"> {memory_pct}"
        ),
        comment=ratio_comment,
        anchor="decision-tree-2-performance-degradation",
        summary=(
            f"Redis {{{{ $labels.instance }}}} uses {percent} % of maxmemory (above {memory_pct} %)"
        ),
        description=_lines(
            f"Redis on {{{{ $labels.instance }}}} uses {percent} % of its maxmemory: memory "
            f"pressure (Decision Tree 2: above {memory_pct} %). Responses slow down and keys get "
            "evicted as it fills.",
            "Identify large keys (redis-cli --bigkeys), implement key expiration, consider "
            "increasing maxmemory (Procedure 3: Configuration Change).",
        ),
    )
    clients_near_max = Rule(
        alert="RedisClientsNearMax",
        severity="warning",
        layer="performance",
        for_seconds=near_clients.seconds("for"),
        expr=(
            f"100 * {metric('redis_connected_clients')}\n"
            f"  / ({metric('redis_config_maxclients')} > 0)\n"
            f"> {clients_pct}"
        ),
        comment=ratio_comment,
        anchor="decision-tree-2-performance-degradation",
        summary=(
            f"Redis {{{{ $labels.instance }}}} has {percent} % of maxclients connected "
            f"(above {clients_pct} %)"
        ),
        description=_lines(
            f"Redis on {{{{ $labels.instance }}}} has {percent} % of its maxclients connected: "
            f"connection pressure (Decision Tree 2: above {clients_pct} %).",
            "Identify the connection sources (redis-cli CLIENT LIST), implement connection "
            "pooling, increase maxclients.",
        ),
    )
    rdb = Rule(
        alert="RedisRdbSaveFailed",
        severity="critical",
        layer="performance",
        for_seconds=t["RedisRdbSaveFailed"].seconds("for"),
        expr=f"{metric('redis_rdb_last_bgsave_status')} == 0",
        anchor="backup-procedures",
        summary="Redis {{ $labels.instance }}: the last background save (RDB) failed",
        description=_lines(
            "The last BGSAVE of Redis on {{ $labels.instance }} failed: changes since the last "
            "good save would be lost in a restart, and with stop-writes-on-bgsave-error Redis "
            "refuses writes.",
            "Find the error in /var/log/redis/redis-server.log (disk full? permissions of "
            "/var/lib/redis/?) and redis-cli INFO persistence, fix it, run redis-cli BGSAVE. "
            "Avoid restarting Redis until a save succeeds, and check the latest backup "
            "(Backup Procedures).",
        ),
    )
    return Group(
        "redis-performance",
        [
            *_band_rules(t, memory, "warning_mb", "critical_mb"),
            *_band_rules(t, clients, "warning", "critical"),
            *_band_rules(t, ops, "warning", "critical"),
            memory_near_max,
            clients_near_max,
            rdb,
        ],
    )


def remediator(t: Thresholds) -> Group:
    def metric(name: str, matchers: str = "") -> str:
        return f'{name}{{job="{REMEDIATOR_JOB}"{matchers}}}'

    audit = "redis-autoheal audit summary --config FILE --since 24h"
    exhausted_window = format_duration(t["RedisAutoRecoveryFailed"].seconds("window"))
    exhausted = Rule(
        alert="RedisAutoRecoveryFailed",
        severity="critical",
        expr=_by_target(
            "sum by (target) (increase("
            f"{metric('autoheal_recovery_exhausted_total')}[{exhausted_window}])) > 0"
        ),
        anchor="decision-tree-3-auto-recovery-failing",
        summary=(
            "Auto-recovery of Redis {{ $labels.instance }} failed: manual intervention required"
        ),
        description=_lines(
            "All recovery levels (reload, start, restart) failed for {{ $labels.instance }} in "
            f"the last {exhausted_window}; the remediator has given up.",
            "Follow Decision Tree 3 (Auto-Recovery Failing) and the Pre-Intervention Checklist: "
            "systemctl status and journalctl -n 50 of the Redis unit, SSH connectivity, sudo "
            "permissions (sudo -l), then Procedure 1 (Manual Service Start) or 2 (Manual "
            f"Service Restart). Review the attempts: {audit}.",
            f"This alert resolves {exhausted_window} after the last failure, not when Redis is "
            "fixed.",
        ),
    )
    breaker = Rule(
        alert="RedisRecoveryCircuitOpen",
        severity="critical",
        for_seconds=t["RedisRecoveryCircuitOpen"].seconds("for"),
        expr=_by_target(f"max by (target) ({metric('autoheal_circuit_breaker_open')}) == 1"),
        anchor="recovery-loop-prevention",
        summary="Auto-recovery of Redis {{ $labels.instance }} is disabled: circuit breaker open",
        description=_lines(
            "Too many recoveries in a short time (runbook: 3 within 5 minutes) opened the "
            "circuit breaker of {{ $labels.instance }}: the remediator will not act on it until "
            "an admin resets the breaker.",
            f"Find the root cause (Decision Tree 3; the recoveries are in the audit log: {audit}) "
            "and fix it, then reset the breaker: redis-autoheal breaker reset --config FILE "
            "--target {{ $labels.instance }} (or POST "
            "/api/services/{{ $labels.instance }}/reset-circuit-breaker with an admin token).",
        ),
    )
    burst_settings = t["RedisOperationsBurst"]
    operations = burst_settings.count("operations")
    within = burst_settings.seconds("within")
    burst_window = format_duration(within + t.intervals["remediator"])
    count = '{{ printf "%.0f" $value }}'
    ops = metric("autoheal_operations_total")
    burst = Rule(
        alert="RedisOperationsBurst",
        severity="warning",
        expr=_by_target(
            f"sum by (target) (\n    {ops}\n    - {ops} offset {burst_window}\n  ) >= {operations}"
        ),
        comment=(
            "The counter now less the counter one window ago: an exact count. increase() would "
            "extrapolate, and can turn 2 operations into more than 3. The window is "
            f"{format_duration(within)} plus one scrape interval: a counter sampled every "
            f"{t.intervals['remediator']}s shows all operations of a {format_duration(within)} "
            f"burst only in a window that long, so operations up to {burst_window} apart count. "
            "A remediator restart (counter reset) in the window makes the difference negative: "
            "no alert for that window."
        ),
        anchor="audit-alert-conditions",
        summary=(
            f"{count} service operations on Redis {{{{ $labels.instance }}}} "
            f"within {format_duration(within)}"
        ),
        description=_lines(
            f"The remediator ran {count} service operations on {{{{ $labels.instance }}}} within "
            f"about {format_duration(within)} (runbook, Audit Alert Conditions: {operations}+ "
            f"operations within {format_duration(within)}).",
            f"Review them in the audit log ({audit}): which operations, auto_recovery or "
            "manual, by whom and from where. A recovery loop, an unexpected user or an "
            "unexpected address is an incident (Security Monitoring).",
        ),
    )
    violation_window = format_duration(t["RedisRemediatorSecurityViolation"].seconds("window"))
    violation = Rule(
        alert="RedisRemediatorSecurityViolation",
        severity="critical",
        expr=(
            "sum by (job, instance, reason) (increase("
            f"{metric('autoheal_security_violations_total')}[{violation_window}])) > 0"
        ),
        anchor="security-monitoring",
        summary="The remediator rejected requests: {{ $labels.reason }}",
        description=_lines(
            f"The remediator at {{{{ $labels.instance }}}} counted {count} security "
            f"violation(s) of kind {{{{ $labels.reason }}}} in the last {violation_window}: a "
            "rejected token, a role not permitted, an unexpected address or a command outside "
            "the whitelist.",
            "Follow Security Monitoring: alert the security team, review the audit log "
            f"({audit}), disable the affected accounts and tokens, find the root cause. A "
            "rejected token on /webhook usually means Alertmanager's credentials_file differs "
            "from remediator.webhook_token_file.",
        ),
    )
    webhook_window = format_duration(t["RedisRemediatorWebhookRejected"].seconds("window"))
    rejected = metric("autoheal_webhook_requests_total", ', code!~"2.."')
    webhook = Rule(
        alert="RedisRemediatorWebhookRejected",
        severity="warning",
        expr=(f"sum by (job, instance, code) (increase({rejected}[{webhook_window}])) > 0"),
        anchor="monitoring-auto-recovery",
        summary="The remediator answered HTTP {{ $labels.code }} to Alertmanager's webhook",
        description=_lines(
            f"{count} webhook request(s) from Alertmanager got HTTP {{{{ $labels.code }}}} from "
            f"the remediator at {{{{ $labels.instance }}}} in the last {webhook_window}: those "
            "remediation alerts were not acted upon.",
            "401: Alertmanager's bearer token (credentials_file) differs from "
            "remediator.webhook_token_file. 413: the payload is over the remediator's 1 MiB "
            "limit (lower max_alerts in alertmanager.yml). 400: a payload the remediator does "
            "not understand. 5xx: see the remediator's log.",
        ),
    )
    audit_window = format_duration(t["RedisRemediatorAuditWriteFailing"].seconds("window"))
    audit_failing = Rule(
        alert="RedisRemediatorAuditWriteFailing",
        severity="warning",
        expr=(
            "sum by (job, instance) (increase("
            f"{metric('autoheal_audit_write_errors_total')}[{audit_window}])) > 0"
        ),
        anchor="audit-log-review",
        summary="The remediator cannot write its audit log",
        description=_lines(
            f"The remediator at {{{{ $labels.instance }}}} failed to write {count} audit "
            f"event(s) in the last {audit_window}: service operations go unaudited.",
            "Check the audit path (audit.path in the config; logs/audit/"
            "redis_service_management.log by default): disk space, permissions, rotation.",
        ),
    )
    return Group(
        "redis-autoheal-remediator",
        [exhausted, breaker, burst, violation, webhook, audit_failing],
    )


def self_monitoring(t: Thresholds) -> Group:
    probe_for = t["RedisProbeFailed"].seconds("for")
    layer = "{{ $labels.layer }}"
    probe_text = (
        f"Prometheus has failed to scrape /probe?target={{{{ $labels.instance }}}}&module={layer} "
        f"on the exporter for {format_duration(probe_for)} (an error or a timeout): the {layer} "
        "layer of {{ $labels.instance }} is not monitored."
    )
    probe_check = (
        "Try it: curl -sS 'http://127.0.0.1:9121/probe?target={{ $labels.instance }}"
        f"&module={layer}'. A 400 names the problem (a target missing from the exporter's "
        "config?); Prometheus's Targets page shows the scrape error."
    )

    def probe(severity: Severity, jobs: list[str], extra: tuple[str, ...]) -> Rule:
        return Rule(
            alert="RedisProbeFailed",
            severity=severity,
            for_seconds=probe_for,
            expr=(
                f'label_replace(\n  up{{job=~"{"|".join(jobs)}"}} == 0,\n'
                '  "layer", "$1", "job", "redis-(.*)"\n)'
            ),
            anchor="health-monitoring",
            summary=f"Prometheus cannot scrape the {layer} probe of {{{{ $labels.instance }}}}",
            description=_lines(probe_text, *extra, probe_check),
        )

    exporter_for = t["RedisAutohealExporterDown"].seconds("for")
    remediator_for = t["RedisRemediatorDown"].seconds("for")
    healthz = "curl -sS http://{{ $labels.instance }}/healthz"
    return Group(
        "redis-autoheal-self",
        [
            probe(
                "critical",
                [PROBE_JOBS["connectivity"]],
                ("RedisDown cannot fire for it.",),
            ),
            probe("warning", [PROBE_JOBS["systemd"], PROBE_JOBS["performance"]], ()),
            Rule(
                alert="RedisAutohealExporterDown",
                severity="critical",
                for_seconds=exporter_for,
                expr=f'up{{job="{EXPORTER_JOB}"}} == 0',
                anchor="health-monitoring",
                summary="The redis-autoheal exporter at {{ $labels.instance }} is down",
                description=_lines(
                    "Prometheus cannot scrape the exporter's own metrics at "
                    "{{ $labels.instance }}: there is no health data for any Redis target, so "
                    "no Redis alert (RedisDown included) can fire.",
                    "Check the process (redis-autoheal exporter --config FILE) and its log, and "
                    f"{healthz}.",
                ),
            ),
            Rule(
                alert="RedisRemediatorDown",
                severity="critical",
                for_seconds=remediator_for,
                expr=f'up{{job="{REMEDIATOR_JOB}"}} == 0',
                anchor="manual-intervention-procedures",
                summary="The redis-autoheal remediator at {{ $labels.instance }} is down",
                description=_lines(
                    "Prometheus cannot scrape the remediator at {{ $labels.instance }}: "
                    "auto-recovery is not running and remediation alerts go unanswered. Redis "
                    "failures need manual handling (Manual Intervention Procedures) until it is "
                    "back.",
                    "Check the process (redis-autoheal remediator --config FILE) and its log, "
                    f"and {healthz}.",
                ),
            ),
            Rule(
                alert="RedisRemediatorCoordinationDown",
                severity="critical",
                for_seconds=t["RedisRemediatorCoordinationDown"].seconds("for"),
                expr=f'autoheal_coordination_up{{job="{REMEDIATOR_JOB}"}} == 0',
                anchor="manual-intervention-procedures",
                summary="The remediator at {{ $labels.instance }} cannot reach its etcd quorum",
                description=_lines(
                    "The remediator replica at {{ $labels.instance }} holds no live lease on "
                    "its etcd cluster (coordination.backend: etcd): it answers Alertmanager "
                    "503 and acts on nothing. If every replica says so, Redis failures need "
                    "manual handling until etcd has quorum again.",
                    "Check the etcd members (etcdctl endpoint health --cluster) and the "
                    "network between them and the replica.",
                ),
            ),
        ],
    )


def build(t: Thresholds) -> list[Group]:
    """All rule groups, in the order of the rules file."""
    return [connectivity(t), systemd(t), performance(t), remediator(t), self_monitoring(t)]
