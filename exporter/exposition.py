"""A lean encoder of the Prometheus text format (0.0.4) for the metric families of /probe.

prometheus_client's `generate_latest` validates and escapes every metric name again for each
sample: for one performance probe that is about 80 regular-expression checks and a third of
the exporter's CPU per scrape. The families of a probe come from a fixed set, named and
checked when their `Metric` objects are built, so here the HELP and TYPE lines are made once
per family and cached, and each sample is one f-string. The output is the same text as
`generate_latest` gives (tests/exporter/test_exposition.py checks it).

`Family` is a lighter metric family for the hundreds of series one INFO gives: it keeps the
exact name redis_exporter uses, also for its counters without the `_total` suffix that
prometheus_client would add (`redis_total_error_replies`), and renders each sample when it is
added. `Chunk` is text already rendered, for the hottest paths (exporter/infometrics.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from prometheus_client import Metric


class Source(Protocol):
    """A registry, or a collector yielding prometheus_client metrics or Families."""

    def collect(self) -> Iterable[Metric | Family | Chunk]: ...


_INF = float("inf")
_TYPES = {
    "gauge": "gauge",
    "counter": "counter",
    "unknown": "untyped",
    "summary": "summary",
    "histogram": "histogram",
}
# One per family; families named after unknown INFO fields could grow it, hence the cap.
_headers: dict[tuple[str, str, str, bool], str] = {}
_HEADERS_MAX = 4096


def _header(name: str, kind: str, documentation: str, *, exact: bool = False) -> str:
    key = (name, kind, documentation, exact)
    header = _headers.get(key)
    if header is None:
        exposed = name + "_total" if kind == "counter" and not exact else name
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
        header = f"# HELP {exposed} {doc}\n# TYPE {exposed} {_TYPES[kind]}\n"
        if len(_headers) < _HEADERS_MAX:
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


class Family:
    """One metric family under its exact exposed name, its samples rendered as they are added.

    `labels` are the label names; `add(value, *values)` takes their values in the same order.
    Label pairs are written sorted by name, as prometheus_client and client_golang do.
    """

    __slots__ = ("_order", "documentation", "labels", "lines", "name", "type")

    def __init__(
        self, name: str, kind: str, documentation: str, labels: Sequence[str] = ()
    ) -> None:
        if kind not in _TYPES:
            raise ValueError(f"unknown metric type {kind!r}")
        self.name = name
        self.type = kind
        self.documentation = documentation
        self.labels = tuple(labels)
        self._order = sorted(range(len(self.labels)), key=self.labels.__getitem__)
        self.lines: list[str] = []  # sample lines, newline-terminated

    def header(self) -> str:
        return _header(self.name, self.type, self.documentation, exact=True)

    def label_text(self, values: Sequence[str], extra: str = "") -> str:
        """`a="x",b="y"` for these label values (in `labels` order), then `extra` if any."""
        names = self.labels
        pairs = [f'{names[i]}="{_label_value(values[i])}"' for i in self._order]
        if extra:
            pairs.append(extra)
        return ",".join(pairs)

    def add(self, value: float, *values: str) -> None:
        if values:
            self.lines.append(f"{self.name}{{{self.label_text(values)}}} {_number(value)}\n")
        else:
            self.lines.append(f"{self.name} {_number(value)}\n")

    def add_sample(self, suffix: str, label_text: str, value: float) -> None:
        """A sample of a summary or histogram: `_sum`, `_count`, `_bucket` or a quantile."""
        if label_text:
            self.lines.append(f"{self.name}{suffix}{{{label_text}}} {_number(value)}\n")
        else:
            self.lines.append(f"{self.name}{suffix} {_number(value)}\n")


class Chunk:
    """Families already rendered as text (headers and samples), sent as they are."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def render(collector: Source) -> bytes:
    """The text format of everything `collector` yields (a registry, a collector)."""
    out: list[str] = []
    for metric in collector.collect():
        if isinstance(metric, Family):
            if metric.lines:
                out.append(metric.header())
                out.extend(metric.lines)
            continue
        if isinstance(metric, Chunk):
            out.append(metric.text)
            continue
        kind = metric.type
        if kind not in _TYPES:
            raise TypeError(f"render cannot write {kind} metrics ({metric.name})")
        out.append(_header(metric.name, kind, metric.documentation))
        for sample in metric.samples:
            labels = sample.labels
            if labels:
                pairs = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{sample.name}{{{pairs}}} {_number(sample.value)}\n")
            else:
                out.append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(out).encode()


def go_number(value: float) -> str:
    """A sample value as client_golang writes it (Go's notation for NaN, Inf, big numbers)."""
    return _number(value)
