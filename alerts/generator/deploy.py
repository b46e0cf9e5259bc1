"""alerts/prometheus.yml and alerts/alertmanager.yml adapted to where they run.

The compose stack (docker/) and the demo's local stack (demo/configs.py) run the shipped jobs,
rules, routes, inhibitions and maintenance windows; only addresses, target files, people's
receivers and (for the demo) the cadence differ. A job or route this module does not know
stops it with its name: better than a silently different routing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from redis_autoheal.thresholds import format_duration, parse_duration

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

# The probe jobs of prometheus.yml and the layer each asks for; then the services' own jobs.
PROBE_JOBS = {
    "redis-connectivity": "connectivity",
    "redis-systemd": "systemd",
    "redis-performance": "performance",
}
SERVICE_JOBS = ("redis-autoheal-exporter", "redis-autoheal-remediator")


class ShapeError(Exception):
    """A shipped config has a job or route this module does not know how to adapt."""


@dataclass(frozen=True)
class PrometheusSite:
    """Where the stack's parts are (HOST:PORT) and which file_sd files each probe job reads."""

    alertmanager: str
    exporter: str
    remediator: str
    target_files: Mapping[str, list[str]]  # probe job -> its file_sd files
    rule_files: list[str] | None = None  # None: as shipped
    global_: Mapping[str, str] | None = None  # None: as shipped
    # probe job -> (scrape_interval, scrape_timeout); a job not named keeps the shipped ones
    intervals: Mapping[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Waits:
    """group_wait of each kind of route, and one group_interval for all."""

    root: str
    remediator: str
    grace: str  # remediate="true", critical -> on-call, after auto-recovery's grace
    page: str  # other critical -> on-call
    group_interval: str


@dataclass(frozen=True)
class AlertmanagerSite:
    """The remediator's webhook, and what people's receivers become."""

    remediator_url: str
    webhook_token_file: str
    # None: people's receivers keep their names but lose their integrations (nobody is paged);
    # else each becomes a webhook to SINK/NAME.
    sink_url: str | None = None
    templates: list[str] | None = None  # None: none (no integration renders one)
    waits: Waits | None = None  # None: as shipped
    maintenance_windows: bool = True


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ShapeError(f"{path}: not a YAML mapping")
    return data


def _unshared(node: Any) -> Any:  # noqa: ANN401 -- any YAML-shaped value
    """A copy in which nothing is shared: the shipped files' YAML anchors load as shared
    objects, and each job must be changed on its own."""
    if isinstance(node, dict):
        return {k: _unshared(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshared(v) for v in node]
    return node


def prometheus(shipped: dict[str, Any], site: PrometheusSite) -> dict[str, Any]:
    config: dict[str, Any] = _unshared(shipped)
    if site.global_ is not None:
        config["global"] = dict(site.global_)
    if site.rule_files is not None:
        config["rule_files"] = list(site.rule_files)
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [site.alertmanager]}]}]}
    seen = set()
    for job in config["scrape_configs"]:
        name = job["job_name"]
        seen.add(name)
        if name in PROBE_JOBS:
            if name in site.intervals:
                job["scrape_interval"], job["scrape_timeout"] = site.intervals[name]
            job["file_sd_configs"] = [{"files": list(site.target_files[name])}]
            (address,) = [
                r for r in job["relabel_configs"] if r.get("target_label") == "__address__"
            ]
            address["replacement"] = site.exporter
        elif name in SERVICE_JOBS:
            address = site.exporter if name == "redis-autoheal-exporter" else site.remediator
            job["static_configs"] = [{"targets": [address]}]
        else:
            raise ShapeError(f"alerts/prometheus.yml: job {name!r} unknown to {__name__}")
    if seen != {*PROBE_JOBS, *SERVICE_JOBS}:
        raise ShapeError(f"alerts/prometheus.yml: jobs {sorted(seen)}, expected five known ones")
    return config


def site_prometheus(shipped: dict[str, Any], ping_interval: int) -> dict[str, Any]:
    """The shipped config with its connectivity job PINGing every `ping_interval` seconds.

    A hung Redis's failed PING becomes a sample only when its scrape times out, and RedisDown
    counts it only in a rule evaluation before the next PING is due (less 1 s): the scrape
    timeout is kept below half the interval, and rules are evaluated at most that gap apart,
    in a step that divides every scrape interval (so the generated promtool tests, evaluated at
    the same step, hold). At the shipped 30 s all stays as shipped (timeout 5 s, rules 15 s).
    """
    config: dict[str, Any] = _unshared(shipped)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "redis-connectivity"]
    timeout = min(parse_duration(job["scrape_timeout"], "scrape_timeout"), (ping_interval - 1) // 2)
    if timeout < 1:
        raise ShapeError(f"a PING interval of {ping_interval}s leaves no time for a scrape timeout")
    job["scrape_interval"] = format_duration(ping_interval)
    job["scrape_timeout"] = format_duration(timeout)
    every = config["global"]
    intervals = [every["scrape_interval"]] + [
        j.get("scrape_interval", "0s") for j in config["scrape_configs"]
    ]
    step = math.gcd(*(parse_duration(i, "scrape_interval") for i in intervals))
    limit = min(
        parse_duration(every["evaluation_interval"], "evaluation_interval"),
        ping_interval - 1 - timeout,
    )
    every["evaluation_interval"] = format_duration(
        max(d for d in range(1, limit + 1) if step % d == 0)
    )
    return config


def route_role(route: dict[str, Any]) -> str:
    receiver, matchers = route.get("receiver"), route.get("matchers", [])
    if receiver == "remediator":
        return "remediator"
    if receiver == "oncall" and 'remediate="true"' in matchers:
        return "grace"
    if receiver == "oncall":
        return "page"
    raise ShapeError(f"alerts/alertmanager.yml: route {route!r} unknown to {__name__}")


def _routes(route: dict[str, Any], site: AlertmanagerSite) -> None:
    waits = site.waits
    if waits is not None:
        route["group_wait"], route["group_interval"] = waits.root, waits.group_interval
    for child in route.get("routes", []):
        role = route_role(child)
        if child.get("routes"):
            raise ShapeError(f"alerts/alertmanager.yml: nested routes unknown to {__name__}")
        if waits is not None:
            child["group_wait"] = getattr(waits, role)
            child["group_interval"] = waits.group_interval
        if not site.maintenance_windows:
            child.pop("mute_time_intervals", None)


def alertmanager(shipped: dict[str, Any], site: AlertmanagerSite) -> dict[str, Any]:
    config: dict[str, Any] = _unshared(shipped)
    config.pop("global", None)  # SMTP: no receiver here sends e-mail
    config.pop("templates", None)
    if site.templates is not None:
        config["templates"] = list(site.templates)
    _routes(config["route"], site)
    receivers: list[dict[str, Any]] = []
    for receiver in config["receivers"]:
        name = receiver["name"]
        if name == "remediator":
            (hook,) = receiver["webhook_configs"]
            hook["url"] = site.remediator_url
            hook["http_config"]["authorization"]["credentials_file"] = site.webhook_token_file
            receivers.append(receiver)
        elif site.sink_url is None:
            receivers.append({"name": name})
        else:
            url = f"{site.sink_url}/{name}"
            receivers.append(
                {"name": name, "webhook_configs": [{"url": url, "send_resolved": True}]}
            )
    config["receivers"] = receivers
    return config


def remediator_replicas(config: dict[str, Any], urls: Sequence[str]) -> dict[str, Any]:
    """`config` (as alertmanager() made it) with the remediator's webhook sent to each of
    `urls`, the replicas of one remediator: every replica gets every notification, and the
    replicas act once (coordination: etcd)."""
    config = _unshared(config)
    (receiver,) = [r for r in config["receivers"] if r["name"] == "remediator"]
    (hook,) = receiver["webhook_configs"]
    receiver["webhook_configs"] = [{**_unshared(hook), "url": url} for url in urls]
    return config


# The compose stack (docker-compose.yml): its service names, its target lists (only the
# targets with an `ssh` section have a systemd layer), the token copy docker/secrets-init.sh
# makes for Alertmanager's user, and nobody paged (Alertmanager's UI shows what would be sent).
COMPOSE_PROMETHEUS = PrometheusSite(
    alertmanager="alertmanager:9093",
    exporter="exporter:9121",
    remediator="remediator:9122",
    target_files={
        "redis-connectivity": ["targets/all.yml"],
        "redis-systemd": ["targets/ssh.yml"],
        "redis-performance": ["targets/all.yml"],
    },
)
COMPOSE_ALERTMANAGER = AlertmanagerSite(
    remediator_url="http://remediator:9122/webhook",
    webhook_token_file="/run/alertmanager-secrets/webhook_token",  # noqa: S106 -- a path
)


def prometheus_replicas(
    config: dict[str, Any], alertmanagers: Sequence[str], remediators: Sequence[str]
) -> dict[str, Any]:
    """`config` (as prometheus() made it) sending its alerts to every Alertmanager of a
    cluster and scraping every remediator replica (each HOST:PORT)."""
    config = _unshared(config)
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "redis-autoheal-remediator"]
    job["static_configs"] = [{"targets": list(remediators)}]
    return config


def coordinated(config: dict[str, Any], endpoints: Sequence[str]) -> dict[str, Any]:
    """A redis-autoheal config (`config`, as loaded) for replicas sharing the etcd cluster at
    `endpoints`."""
    return {
        **_unshared(config),
        "coordination": {"backend": "etcd", "etcd": {"endpoints": list(endpoints)}},
    }


# The compose stack's `ha` profile: two clustered Alertmanagers, each sending to both
# remediator replicas, which share a 3-member etcd cluster; its own Prometheus alerts both.
COMPOSE_HA_ALERTMANAGERS = ("alertmanager-1:9093", "alertmanager-2:9093")
COMPOSE_HA_REMEDIATORS = ("remediator-1:9122", "remediator-2:9122")
COMPOSE_HA_ETCD = ("http://etcd-1:2379", "http://etcd-2:2379", "http://etcd-3:2379")
