"""Turns one /probe's layer results into metric families, for a registry built per request.

Names follow docs/reference.md, and redis_exporter's names and units wherever it exports the same
quantity, so community dashboards and rules keep working. A sample for module=all (HELP and TYPE
lines left out), where SSH works, the unit is active, and Redis answers:

    redis_probe_success{layer="connectivity"} 1.0
    redis_probe_success{layer="systemd"} 1.0
    redis_probe_success{layer="performance"} 1.0
    redis_probe_duration_seconds{layer="connectivity"} 0.00052
    redis_probe_duration_seconds{layer="systemd"} 0.0127
    redis_probe_duration_seconds{layer="performance"} 0.00071
    redis_up 1.0
    redis_ping_latency_seconds 0.00049
    redis_ssh_up 1.0
    redis_systemd_unit_state{state="active",unit="redis-server"} 1.0
    redis_systemd_unit_state{state="reloading",unit="redis-server"} 0.0
    ... (inactive, failed, activating, deactivating: 0.0)
    redis_memory_used_bytes 1.127912e+06
    ... (redis_exporter's families: exporter/infometrics.py, ~250 series on an idle Redis)
    redis_commands_total{cmd="get"} 2.0
    redis_db_keys{db="db0"} 10.0
    redis_instance_info{master_replid="..",...,redis_version="7.0.15",role="master",...} 1.0
    redis_config_maxclients 10000.0
    redis_exporter_last_scrape_error{err=""} 0.0
    redis_exporter_scrapes_total 12.0

A layer that failed adds `redis_probe_error{layer,reason} 1.0`, reason from the fixed set of
redis_autoheal.probe.Reason, and sends none of its own series but redis_up 0 / redis_ssh_up 0 /
redis_exporter_last_scrape_error{err=REASON} 1 and the scrape counters.

`redis_systemd_unit_state{unit,state}` is 1 for the current state and 0 for each other of
active, reloading, inactive, failed, activating, deactivating. A state outside those six
(maintenance, refreshing, ...) gives all six 0 and one more series, state="unknown", at 1,
plus `redis_probe_error{layer="systemd",reason="unknown_state"}`. When the state could not
be read (SSH down, no `ssh` section, systemctl printed nothing) no unit-state series is sent:
`redis_ssh_up` and `redis_probe_error` say why.

With `exporter.follow`, the systemd layer also sends `redis_systemd_unit_followed{unit}`: 1 while
the exporter follows the unit and its alert pushes are taken (exporter/follow.py `followed`),
else 0; the rules' RedisServiceInactive and RedisServiceFailed stand down while it is 1. Without
`exporter.follow` it is not sent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.exposition import Chunk, Family
from exporter.infometrics import info_families
from exporter.probe import ScrapeResult, ScrapeStats
from exporter.scrape import RedisScrape
from redis_autoheal.probe import ConnectivityResult, LayerResult, PerformanceResult, SystemdResult
from redis_autoheal.units import UNIT_STATES, UNKNOWN_STATE

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


class ProbeCollector:
    """Yields the metric families of one probe's results; registered on a fresh registry."""

    def __init__(self, results: Sequence[LayerResult], followed: bool | None = None) -> None:
        self.results = results
        self.followed = followed  # None: the unit is not followed (no exporter.follow)

    def collect(self) -> Iterator[Metric | Family | Chunk]:
        now = time.time()
        success = GaugeMetricFamily(
            "redis_probe_success", "1 if the layer's check passed.", labels=["layer"]
        )
        duration = GaugeMetricFamily(
            "redis_probe_duration_seconds", "How long the layer's probe took.", labels=["layer"]
        )
        error = GaugeMetricFamily(
            "redis_probe_error",
            "1 for a layer that failed, with why: timeout, refused, unreachable, auth, tls, "
            "ssh_auth, host_key, ... (see redis_autoheal/probe.py Reason).",
            labels=["layer", "reason"],
        )
        for r in self.results:
            success.add_metric([r.layer], 1.0 if r.success else 0.0)
            duration.add_metric([r.layer], r.duration_seconds)
            if r.reason is not None:
                error.add_metric([r.layer, r.reason], 1.0)
        yield success
        yield duration
        if error.samples:
            yield error
        for r in self.results:
            if isinstance(r, ConnectivityResult):
                yield from _connectivity(r)
            elif isinstance(r, SystemdResult):
                yield from _systemd(r, self.followed)
            elif isinstance(r, PerformanceResult):
                yield from _performance(r, now)


def _connectivity(r: ConnectivityResult) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "redis_up", "1 if Redis answered PING.", value=1.0 if r.success else 0.0
    )
    if r.latency_seconds is not None:
        yield GaugeMetricFamily(
            "redis_ping_latency_seconds", "Round trip of PING.", value=r.latency_seconds
        )


def _systemd(r: SystemdResult, followed: bool | None) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "redis_ssh_up", "1 if a command ran over SSH on the unit's host.", value=float(r.ssh_up)
    )
    if followed is not None:
        follow = GaugeMetricFamily(
            "redis_systemd_unit_followed",
            "1 while the exporter follows the unit and its alert pushes reach Alertmanager.",
            labels=["unit"],
        )
        follow.add_metric([r.unit], float(followed))
        yield follow
    if r.state is None:
        return
    states = GaugeMetricFamily(
        "redis_systemd_unit_state",
        "1 for the unit's current state (systemctl is-active), 0 for the others.",
        labels=["unit", "state"],
    )
    for state in UNIT_STATES:
        states.add_metric([r.unit, state], 1.0 if state == r.state else 0.0)
    if r.state == UNKNOWN_STATE:
        states.add_metric([r.unit, UNKNOWN_STATE], 1.0)
    yield states


def _performance(r: PerformanceResult, now: float) -> Iterator[Metric | Family | Chunk]:
    """redis_exporter's families of the scrape, and its own per-target scrape figures."""
    scrape = r.scrape if isinstance(r, ScrapeResult) else None
    if scrape is not None:
        yield from info_families(scrape, now)
    elif r.success:  # a result made by hand (tests): INFO and maxclients only
        config = {} if r.maxclients is None else {"maxclients": r.maxclients}
        yield from info_families(RedisScrape(info=r.info, config=config), now)
    yield from _scrape_figures(r, scrape)


def _scrape_figures(r: PerformanceResult, scrape: RedisScrape | None) -> Iterator[Family]:
    """redis_exporter_last_scrape_* and its scrape counters, for this target."""
    error = Family(
        "redis_exporter_last_scrape_error",
        "gauge",
        "The last scrape error status (err: the probe's reason, empty after a success).",
        ("err",),
    )
    error.add(0.0 if r.success else 1.0, "" if r.reason is None else str(r.reason))
    yield error
    duration = Family(
        "redis_exporter_last_scrape_duration_seconds", "gauge", "The last scrape's duration."
    )
    duration.add(r.duration_seconds)
    yield duration
    if scrape is not None:
        connect = Family(
            "redis_exporter_last_scrape_connect_time_seconds",
            "gauge",
            "Time to get a connection to Redis (0 for one kept open).",
        )
        connect.add(scrape.connect_seconds)
        yield connect
    stats = r.stats if isinstance(r, ScrapeResult) else ScrapeStats()
    scrapes = Family("redis_exporter_scrapes_total", "counter", "Scrapes of this target.")
    scrapes.add(float(stats.scrapes))
    yield scrapes
    summary = Family(
        "redis_exporter_scrape_duration_seconds", "summary", "Durations of scrapes of this target."
    )
    summary.add_sample("_sum", "", stats.seconds)
    summary.add_sample("_count", "", float(stats.scrapes))
    yield summary
    errors = Family(
        "redis_target_scrape_request_errors_total", "counter", "Failed scrapes of this target."
    )
    errors.add(float(stats.errors))
    yield errors
