"""Expand the few Go-template actions the annotations use, as Prometheus would.

promtool compares annotations exactly, so the generated tests need them expanded. Only the
actions listed in `render` are known; any other raises, so a new template action cannot slip
into the rules without its expansion being written (and then checked by promtool) here.
"""

from __future__ import annotations

import math
import re

_ACTION = re.compile(r"\{\{(.*?)\}\}")
_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
_PRINTF = re.compile(r'printf "%\.([0-9])f" \$value')


class TemplateError(ValueError):
    """An action `render` does not know, or a label the alert does not have."""


def humanize_duration(v: float) -> str:
    """Prometheus's humanizeDuration (template/template.go): 0.0051 -> "5.1ms", 90 -> "1m 30s"."""
    if math.isnan(v) or math.isinf(v):
        return f"{v:.4g}"
    if v == 0:
        return f"{v:.4g}s"
    if abs(v) >= 1:
        return _whole_seconds(v)
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{v:.4g}{prefix}s"


def _whole_seconds(v: float) -> str:
    sign = "-" if v < 0 else ""
    total = int(abs(v))
    parts = [
        (total // 86400, "d"),
        (total // 3600 % 24, "h"),
        (total // 60 % 60, "m"),
        (total % 60, "s"),
    ]
    while parts and parts[0][0] == 0 and len(parts) > 1:
        parts.pop(0)
    if len(parts) == 1:  # under a minute: four significant digits
        return f"{sign}{abs(v):.4g}s"
    return sign + " ".join(f"{n}{unit}" for n, unit in parts)


def render(template: str, labels: dict[str, str], value: float) -> str:
    """Expand `template` for an alert with these labels and this value."""

    def action(match: re.Match[str]) -> str:
        text = match.group(1).strip()
        if label := _LABEL.fullmatch(text):
            name = label.group(1)
            if name not in labels:
                raise TemplateError(f"{template!r} uses label {name!r}, not among {labels}")
            return labels[name]
        if printf := _PRINTF.fullmatch(text):
            return f"{value:.{int(printf.group(1))}f}"
        if text == "$value | humanizeDuration":
            return humanize_duration(value)
        raise TemplateError(f"unknown template action {{{{ {text} }}}} in {template!r}")

    return _ACTION.sub(action, template)
