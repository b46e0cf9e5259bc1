"""The unit-state alerts of the Prometheus rules file, as the exporter pushes them itself.

The exporter follows each unit and pushes an alert the moment the unit turns `inactive` or
`failed` (exporter/follow.py). To be the same alert as the rule's, with the same fingerprint in
Alertmanager, it is read from the very rules file Prometheus loads: an alerting rule whose
expression is `redis_systemd_unit_state{job="...", state="STATE"} == 1` fires, for a unit in
STATE, with the selector's labels, `instance` (the target's name), `unit`, the rule's labels
and `alertname`; its annotations are the rule's, with `{{ $labels.NAME }}` filled in. The
expression may go on with `unless on(instance, unit) redis_systemd_unit_followed{...} == 1`
(the generated rules do: the rule stands down while the exporter pushes the alert), which
changes no label. A rule of that shape that uses `for`, or an annotation with any other
template, is refused: the exporter could not send what Prometheus would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from redis_autoheal.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

STATE_METRIC = "redis_systemd_unit_state"
FOLLOWED_METRIC = "redis_systemd_unit_followed"
_UNLESS_FOLLOWED = (
    rf"\s+unless\s+on\s*\(\s*instance\s*,\s*unit\s*\)\s*{FOLLOWED_METRIC}\{{[^}}]*\}}\s*==\s*1"
)
_EXPR = re.compile(rf"\s*{STATE_METRIC}\{{([^}}]*)\}}\s*==\s*1(?:{_UNLESS_FOLLOWED})?\s*")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"\\]*)"\s*')
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LABEL = re.compile(r"\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*")
_ZERO = re.compile(r"0+[smhdwy]?|0+ms")


@dataclass(frozen=True)
class StateAlert:
    """One rule's alert for one unit state; `alert(instance, unit)` fills it in."""

    name: str
    state: str
    labels: tuple[tuple[str, str], ...]  # the selector's, the rule's, and alertname
    annotations: tuple[tuple[str, str], ...]  # templates of {{ $labels.NAME }} only

    def alert(self, instance: str, unit: str) -> tuple[dict[str, str], dict[str, str]]:
        """The alert's labels and annotations for the unit `unit` of target `instance`."""
        labels = dict(self.labels) | {"instance": instance, "unit": unit}
        annotations = {
            key: _ACTION.sub(lambda m: labels.get(_label_name(m[1]) or "", ""), text)
            for key, text in self.annotations
        }
        return labels, annotations


def _label_name(action: str) -> str | None:
    found = _LABEL.fullmatch(action)
    return found[1] if found else None


def _selector(expr: str) -> dict[str, str] | None:
    found = _EXPR.fullmatch(expr)
    if found is None:
        return None
    matchers: dict[str, str] = {}
    for part in found[1].split(","):
        if not part.strip():
            continue
        matcher = _MATCHER.fullmatch(part)
        if matcher is None:
            return None
        matchers[matcher[1]] = matcher[2]
    return matchers if "state" in matchers else None


def _strings(value: object, where: str, path: Path) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError("", f"{path}: {where} must map names to strings")
    return value


def _state_alert(rule: dict[str, object], path: Path) -> StateAlert | None:
    name, expr = rule.get("alert"), rule.get("expr")
    if not isinstance(name, str) or not isinstance(expr, str):
        return None
    matchers = _selector(expr)
    if matchers is None:
        return None
    wait = rule.get("for")
    if wait is not None and not _ZERO.fullmatch(str(wait)):
        raise ConfigError(
            "", f"{path}: alert {name} waits `for: {wait}`; the exporter pushes at once"
        )
    annotations = _strings(rule.get("annotations"), f"alert {name}'s annotations", path)
    for key, text in annotations.items():
        for action in _ACTION.findall(text):
            if _label_name(action) is None:
                raise ConfigError(
                    "",
                    f"{path}: alert {name}'s {key} uses {{{{{action}}}}}; the exporter fills "
                    "in only {{ $labels.NAME }}",
                )
    labels = matchers | _strings(rule.get("labels"), f"alert {name}'s labels", path)
    labels["alertname"] = name
    return StateAlert(
        name=name,
        state=matchers["state"],
        labels=tuple(sorted(labels.items())),
        annotations=tuple(sorted(annotations.items())),
    )


def load_state_alerts(path: Path, key: str) -> dict[str, StateAlert]:
    """The unit-state alerts of the rules file at `path`, by unit state; ConfigError at `key`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(key, f"{path} is not valid YAML: {e}") from None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ConfigError(key, f"{path} is not a Prometheus rules file (no `groups` list)")
    found: dict[str, StateAlert] = {}
    for group in groups:
        rules = group.get("rules") if isinstance(group, dict) else None
        for rule in rules if isinstance(rules, list) else []:
            try:
                alert = _state_alert(rule, path) if isinstance(rule, dict) else None
            except ConfigError as e:
                raise ConfigError(key, e.problem) from None
            if alert is None:
                continue
            if alert.state in found:
                raise ConfigError(
                    key,
                    f"{path}: alerts {found[alert.state].name} and {alert.name} both fire for "
                    f"state {alert.state!r}",
                )
            found[alert.state] = alert
    if not found:
        raise ConfigError(
            key,
            f'{path} has no alert on `{STATE_METRIC}{{state="..."}} == 1` '
            "(RedisServiceInactive, RedisServiceFailed): is it the generated rules file?",
        )
    return found
