"""The exporter's own metrics, on the default registry at /metrics; label sets made up front.

redis_autoheal_exporter_probes_total{module,result}          /probe requests answered
redis_autoheal_exporter_probe_duration_seconds{module}       their duration (histogram)
redis_autoheal_exporter_layer_failures_total{layer,reason}   failed layers, by why
redis_autoheal_exporter_bad_requests_total{reason}           /probe requests refused (400)
redis_autoheal_exporter_targets                              configured targets
redis_autoheal_exporter_config_last_reload_successful        1 if the last reload took effect
redis_autoheal_exporter_config_last_reload_success_timestamp_seconds   when it last did
redis_autoheal_exporter_followed_units                      unit journals followed now
redis_autoheal_exporter_alert_pushes_total{result}          pushes to Alertmanager
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from exporter.probe import MODULES
from redis_autoheal.probe import LAYER_REASONS

BAD_REQUEST_REASONS = (
    "missing_target",
    "unknown_target",
    "unknown_module",
    "repeated_parameter",
    "bad_scrape_timeout",
    "bad_url",
    "not_allowed",
    "unresolvable",
    "no_systemd_layer",
)

PROBES = Counter(
    "redis_autoheal_exporter_probes",
    "Probes answered, by module and result (success: every layer's check passed).",
    ["module", "result"],
)
PROBE_DURATION = Histogram(
    "redis_autoheal_exporter_probe_duration_seconds",
    "Time to answer a /probe request, by module.",
    ["module"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
LAYER_FAILURES = Counter(
    "redis_autoheal_exporter_layer_failures",
    "Failed layer probes, by layer and reason.",
    ["layer", "reason"],
)
BAD_REQUESTS = Counter(
    "redis_autoheal_exporter_bad_requests",
    "/probe requests answered 400, by reason.",
    ["reason"],
)
TARGETS = Gauge("redis_autoheal_exporter_targets", "Targets in the config file.")
RELOAD_SUCCESSFUL = Gauge(
    "redis_autoheal_exporter_config_last_reload_successful",
    "1 if the last config reload (or the start) took effect, 0 if the file was refused.",
)
RELOAD_TIMESTAMP = Gauge(
    "redis_autoheal_exporter_config_last_reload_success_timestamp_seconds",
    "Unix time of the last config load that took effect.",
)
FOLLOWED_UNITS = Gauge(
    "redis_autoheal_exporter_followed_units",
    "Units whose journal is followed over SSH right now (exporter.follow).",
)
ALERT_PUSHES = Counter(
    "redis_autoheal_exporter_alert_pushes",
    "Pushes of unit-state alerts to Alertmanager, by result (success: one Alertmanager took it).",
    ["result"],
)

for _module in MODULES:
    PROBE_DURATION.labels(_module)
    for _result in ("success", "failure"):
        PROBES.labels(_module, _result)
for _layer, _reasons in LAYER_REASONS.items():
    for _reason in _reasons:
        LAYER_FAILURES.labels(_layer, _reason)
for _bad in BAD_REQUEST_REASONS:
    BAD_REQUESTS.labels(_bad)
for _result in ("success", "error"):
    ALERT_PUSHES.labels(_result)
