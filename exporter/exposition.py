"""A lean encoder of the Prometheus text format (0.0.4) for the gauges and counters of /probe.

prometheus_client's `generate_latest` validates and escapes every metric name again for each
sample: for one performance probe that is about 80 regular-expression checks and a third of
the exporter's CPU per scrape. The families of a probe come from a fixed set, named and
checked when their `Metric` objects are built, so here the HELP and TYPE lines are made once
per family and cached, and each sample is one f-string. The output is the same text as
`generate_latest` gives (tests/exporter/test_exposition.py checks it); only gauges, counters
and untyped metrics are accepted, which is all a probe sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

_INF = float("inf")
_TYPES = {"gauge": "gauge", "counter": "counter", "unknown": "untyped"}
_headers: dict[tuple[str, str, str], str] = {}  # bounded: one per family the code defines


def _header(name: str, kind: str, documentation: str) -> str:
    key = (name, kind, documentation)
    header = _headers.get(key)
    if header is None:
        exposed = name + "_total" if kind == "counter" else name
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
        header = f"# HELP {exposed} {doc}\n# TYPE {exposed} {_TYPES[kind]}\n"
        _headers[key] = header
    return header


def _number(value: float) -> str:
    """As prometheus_client's floatToGoString: Go's notation for +Inf, NaN and big numbers."""
    if value != value:  # noqa: PLR0124 -- NaN is the only float unequal to itself
        return "NaN"
    if value in (_INF, -_INF):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _label_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return value


def render(collector: Collector) -> bytes:
    """The text format of everything `collector` yields (a registry or a collector)."""
    out: list[str] = []
    for metric in collector.collect():
        kind = metric.type
        if kind not in _TYPES:
            raise TypeError(f"render takes gauges and counters, not {kind} ({metric.name})")
        out.append(_header(metric.name, kind, metric.documentation))
        for sample in metric.samples:
            labels = sample.labels
            if labels:
                pairs = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{sample.name}{{{pairs}}} {_number(sample.value)}\n")
            else:
                out.append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(out).encode()
