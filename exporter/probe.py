"""The exporter's prober: the shared `Prober` (redis_autoheal.probe) whose performance layer is
redis_exporter's whole scrape (exporter/scrape.py), counted per target, and the `module`
parameter of /probe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

from exporter.scrape import LazyInfo, RedisScrape, Scraper
from redis_autoheal.probe import Layer, LayerResult, PerformanceResult, Prober

if TYPE_CHECKING:
    from redis_autoheal.config import HealthCheck, Target
    from redis_autoheal.links import RedisHosts
    from redis_autoheal.ssh import SshHost

# The `module` query parameter: which layers one /probe runs.
MODULES: dict[str, tuple[Layer, ...]] = {
    "connectivity": (Layer.CONNECTIVITY,),
    "systemd": (Layer.SYSTEMD,),
    "performance": (Layer.PERFORMANCE,),
    "all": (Layer.CONNECTIVITY, Layer.SYSTEMD, Layer.PERFORMANCE),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeStats:
    """redis_exporter's own per-target figures: scrapes run, their total time, failures."""

    scrapes: int = 0
    seconds: float = 0.0
    errors: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeResult(PerformanceResult):
    """The performance layer as the exporter probes it."""

    scrape: RedisScrape | None = None  # everything read; None when the layer failed
    stats: ScrapeStats = field(default_factory=ScrapeStats)  # including this scrape


_NO_SCRAPES = ScrapeStats()


class TargetProber(Prober):
    """A `Prober` whose performance layer is redis_exporter's scrape."""

    __slots__ = ("_scraper", "_stats")

    result_types: ClassVar[dict[Layer, type[LayerResult]]] = {
        **Prober.result_types,
        Layer.PERFORMANCE: ScrapeResult,
    }

    def __init__(
        self,
        target: Target,
        health: HealthCheck,
        ssh: SshHost | None,
        *,
        latency_histograms: bool = False,
        hosts: RedisHosts | None = None,
    ) -> None:
        super().__init__(target, health, ssh, hosts=hosts)
        self._scraper = Scraper(target.name, latency_histograms=latency_histograms)
        self._stats = _NO_SCRAPES  # shared until the first scrape

    def same_as(self, target: Target, health: HealthCheck, latency_histograms: bool) -> bool:
        """True if this prober probes `target` as a new one would (a reload may keep it)."""
        return (
            not self._retired
            and self.target == target
            and self.health == health
            and self._scraper.latency_histograms == latency_histograms
        )

    async def probe_layer(self, layer: Layer, budget: float | None) -> LayerResult:
        return self._count(await super().probe_layer(layer, budget))

    async def _performance(self, started: float, _seconds: float) -> LayerResult:
        scrape = await self._once_more_if_closed(self._scraper.scrape)
        info = scrape.info
        found = info.field("maxclients") if isinstance(info, LazyInfo) else info.get("maxclients")
        maxclients = found or scrape.config.get("maxclients")
        return ScrapeResult(
            layer=Layer.PERFORMANCE,
            success=True,
            duration_seconds=time.perf_counter() - started,
            info=scrape.info,
            maxclients=maxclients,
            scrape=scrape,
        )

    def _count(self, result: LayerResult) -> LayerResult:
        """Add a performance scrape to the target's ScrapeStats, and them to its result."""
        if not isinstance(result, ScrapeResult):
            return result
        old = self._stats
        self._stats = ScrapeStats(
            scrapes=old.scrapes + 1,
            seconds=old.seconds + result.duration_seconds,
            errors=old.errors + (0 if result.success else 1),
        )
        return replace(result, stats=self._stats)
