"""A Prometheus text page as a dict of samples, and lookups in it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def values_with(samples: Samples, metric: str, /, **labels: str) -> list[float]:
    """The values of `metric`'s samples whose labels include these (others may be there too)."""
    wanted = set(labels.items())
    return [v for (n, pairs), v in samples.items() if n == metric and wanted <= set(pairs)]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}
