"""alerts/alertmanager.yml: valid for amtool; each alert reaches exactly the receivers meant for
it; maintenance windows mute remediation and nothing else; secrets come from files; a webhook
payload fits the remediator's body limit; and, on a real Alertmanager whose receivers are all
rewritten to a recorder on 127.0.0.1, routing, inhibition and muting behave as configured."""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import urllib.parse
from datetime import UTC, datetime

import pytest
import yaml

from redis_autoheal.config import RemediatorSettings
from tests.alerts.local_servers import Recorder, get_json, post_json, wait_until
from tests.alerts.local_servers import alertmanager as local_alertmanager
from tests.alerts.paths import ALERTS, ROOT
from tests.alerts.timeintervals import named_contains
from tests.support import HANG, require_binary

REMEDIATE_AND_PAGE = ["remediator", "oncall"]
PAGE = ["oncall"]
OPS = ["ops"]
# Where each alert goes: the remediator acts on the three remediation alerts, which page too;
# other critical alerts page; warnings go to the operations team.
RECEIVERS = {
    ("RedisDown", "critical"): REMEDIATE_AND_PAGE,
    ("RedisServiceInactive", "critical"): REMEDIATE_AND_PAGE,
    ("RedisServiceFailed", "critical"): REMEDIATE_AND_PAGE,
    ("RedisSshUnreachable", "critical"): PAGE,  # a page, never a remediation
    ("RedisServiceTransitionStuck", "warning"): OPS,
    ("RedisPingLatencyHigh", "warning"): OPS,
    ("RedisPingLatencyHigh", "critical"): PAGE,
    ("RedisMemoryHigh", "warning"): OPS,
    ("RedisMemoryHigh", "critical"): PAGE,
    ("RedisClientsHigh", "warning"): OPS,
    ("RedisClientsHigh", "critical"): PAGE,
    ("RedisOpsHigh", "warning"): OPS,
    ("RedisOpsHigh", "critical"): PAGE,
    ("RedisMemoryNearMax", "warning"): OPS,
    ("RedisClientsNearMax", "warning"): OPS,
    ("RedisRdbSaveFailed", "critical"): PAGE,
    ("RedisAutoRecoveryFailed", "critical"): PAGE,
    ("RedisRecoveryCircuitOpen", "critical"): PAGE,
    ("RedisOperationsBurst", "warning"): OPS,
    ("RedisRemediatorSecurityViolation", "critical"): PAGE,
    ("RedisRemediatorWebhookRejected", "warning"): OPS,
    ("RedisRemediatorAuditWriteFailing", "warning"): OPS,
    ("RedisProbeFailed", "critical"): PAGE,
    ("RedisProbeFailed", "warning"): OPS,
    ("RedisAutohealExporterDown", "critical"): PAGE,
    ("RedisRemediatorDown", "critical"): PAGE,
    ("RedisRemediatorCoordinationDown", "critical"): PAGE,
}
MAINTENANCE = ["weekly-maintenance", "monthly-maintenance"]


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def _routes(route: dict) -> list[dict]:
    """The route and all routes below it."""
    return [route] + [r for child in route.get("routes", []) for r in _routes(child)]


def _labels(rule: dict, instance: str = "redis") -> dict[str, str]:
    return {"alertname": rule["alert"], "instance": instance, **rule["labels"]}


@pytest.mark.parametrize("cwd", [ROOT, ALERTS / "rules"], ids=["repo-root", "elsewhere"])
def test_amtool_check_config(amtool, cwd):
    # Templates resolve relative to the config file, wherever amtool runs; the secret files
    # need not exist to check the config.
    result = _run([amtool, "check-config", str(ALERTS / "alertmanager.yml")], cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


def _route(amtool: str, labels: dict[str, str]) -> list[str]:
    """The receivers amtool routes an alert with these labels to, in route order."""
    config = f"--config.file={ALERTS / 'alertmanager.yml'}"
    pairs = [f"{k}={v}" for k, v in labels.items()]
    result = _run([amtool, "config", "routes", "test", config, *pairs])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


def test_every_alert_reaches_exactly_its_receivers(amtool, rules):
    seen = {(r["alert"], r["labels"]["severity"]) for r in rules}
    assert seen == set(RECEIVERS), "every (alert, severity) of the rules needs an entry here"
    for rule in rules:
        got = _route(amtool, _labels(rule))
        assert got == RECEIVERS[rule["alert"], rule["labels"]["severity"]], rule["alert"]


def test_routes_group_by_alert_and_target(am_config):
    assert am_config["route"]["group_by"] == ["alertname", "instance"]
    for route in _routes(am_config["route"])[1:]:
        assert "group_by" not in route  # inherited


def test_remediation_route(am_config):
    (route,) = [r for r in _routes(am_config["route"]) if r["receiver"] == "remediator"]
    assert route["matchers"] == ['remediate="true"']
    assert route["continue"] is True  # critical ones page as well
    assert route["group_wait"] == "1s"
    assert route["mute_time_intervals"] == MAINTENANCE


def test_maintenance_mutes_remediation_only(am_config):
    for route in _routes(am_config["route"]):
        if route["receiver"] != "remediator":
            assert "mute_time_intervals" not in route, route
            assert "active_time_intervals" not in route, route
    # The remediator receiver is used by no other route, so muting its route mutes it alone.
    users = [r for r in _routes(am_config["route"]) if r["receiver"] == "remediator"]
    assert len(users) == 1


def test_auto_recovery_gets_a_grace_period_before_paging(am_config):
    routes = _routes(am_config["route"])
    (grace,) = [
        r for r in routes if r.get("matchers") == ['remediate="true"', 'severity="critical"']
    ]
    assert grace["receiver"] == "oncall"
    assert grace["group_wait"] == "2m"
    (page,) = [r for r in routes if r.get("matchers") == ['severity="critical"']]
    assert page["receiver"] == "oncall"
    assert page["group_wait"] == "10s"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("instant", "weekly", "monthly"),
    [
        # 2025-10-12 is the second Sunday of October 2025.
        ("2025-10-12T01:59:59+00:00", False, False),
        ("2025-10-12T02:00:00+00:00", True, False),
        ("2025-10-12T03:59:59+00:00", True, False),
        ("2025-10-12T04:00:00+00:00", False, False),
        ("2025-10-12T01:30:00+00:00", False, False),
        # 2025-10-05 is the first Sunday.
        ("2025-10-05T00:59:59+00:00", False, False),
        ("2025-10-05T01:00:00+00:00", False, True),
        ("2025-10-05T02:30:00+00:00", True, True),
        ("2025-10-05T04:59:59+00:00", False, True),
        ("2025-10-05T05:00:00+00:00", False, False),
        # First Sundays on the 7th and on the 1st; a Tuesday the 7th is no Sunday.
        ("2025-09-07T01:30:00+00:00", False, True),
        ("2025-06-01T04:30:00+00:00", False, True),
        ("2025-10-07T01:30:00+00:00", False, False),
        ("2025-09-14T01:30:00+00:00", False, False),
        # Saturday and Monday around a Sunday.
        ("2025-10-11T02:30:00+00:00", False, False),
        ("2025-10-13T02:30:00+00:00", False, False),
        # The windows are in UTC, whatever the clock of whoever reads them.
        ("2025-10-12T04:30:00+02:00", True, False),
        ("2025-10-12T02:30:00+02:00", False, False),
        ("2025-10-11T20:30:00-05:00", False, False),
        ("2025-10-04T20:30:00-05:00", False, True),
    ],
)
def test_maintenance_windows(am_config, instant, weekly, monthly):
    t = _utc(instant)
    assert named_contains(am_config, "weekly-maintenance", t) is weekly
    assert named_contains(am_config, "monthly-maintenance", t) is monthly


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2025-10-12T02:30:00+00:00", PAGE),  # weekly window: on-call only
        ("2025-10-05T01:30:00+00:00", PAGE),  # monthly window
        ("2025-10-12T04:00:00+00:00", REMEDIATE_AND_PAGE),
        ("2025-10-08T02:30:00+00:00", REMEDIATE_AND_PAGE),
    ],
)
def test_redis_down_in_and_out_of_maintenance(amtool, am_config, rules, instant, expected):
    (rule,) = [r for r in rules if r["alert"] == "RedisDown"]
    routed = _route(amtool, _labels(rule))
    muted = {
        route["receiver"]
        for route in _routes(am_config["route"])
        if any(
            named_contains(am_config, n, _utc(instant))
            for n in route.get("mute_time_intervals", [])
        )
    }
    assert [r for r in routed if r not in muted] == expected


def _walk(node: object, path: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


def test_secrets_come_from_files(am_config):
    keys = {path.rsplit(".", 1)[-1] for path, _ in _walk(am_config)}
    for inline in ("routing_key", "service_key", "api_url", "auth_password", "credentials",
                   "smtp_auth_password", "password", "bearer_token"):  # fmt: skip
        assert inline not in keys, f"{inline} inline: use its _file variant"
    for path, value in _walk(am_config):
        if path.endswith("_file"):
            assert str(value).startswith("/etc/redis-autoheal/"), path
    oncall = next(r for r in am_config["receivers"] if r["name"] == "oncall")
    assert oncall["pagerduty_configs"][0]["routing_key_file"]
    assert oncall["email_configs"][0]["auth_password_file"]
    assert oncall["slack_configs"][0]["api_url_file"]


def test_remediator_webhook(am_config):
    (receiver,) = [r for r in am_config["receivers"] if r["name"] == "remediator"]
    (hook,) = receiver["webhook_configs"]
    assert set(receiver) == {"name", "webhook_configs"}
    settings = RemediatorSettings()
    assert hook["url"] == f"http://{settings.listen}/webhook"
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": str(settings.webhook_token_file),
    }


def test_example_addresses_are_the_runbooks(am_config):
    addresses = {c["to"] for r in am_config["receivers"] for c in r.get("email_configs", [])}
    assert addresses <= {"admin@autobot.local", "ops@autobot.local", "emergency@autobot.local"}


def _go_json(data: object) -> bytes:
    # Go's encoding/json writes <, > and & as \u003c, \u003e and \u0026.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


LONG = "x" * 255  # systemd's limit for a unit name; target names have no limit but are short


def _worst_alert(rule: dict, n: int) -> dict:
    """The rule's alert as Alertmanager sends it, with every label as long as it gets."""
    import re  # noqa: PLC0415 -- only here

    def expand(template: str) -> str:
        template = re.sub(r"\{\{ \$labels\.\w+ \}\}", LONG, template)
        return re.sub(r"\{\{[^}]*\$value[^}]*\}\}", "-1.7976931348623157e+308", template)

    labels = {
        **_labels(rule, LONG),
        "job": "redis-autoheal-remediator",
        "unit": LONG,
        "state": "deactivating",
        "target": LONG,
        "reason": "address_not_allowed",
        "code": "503",
        "layer": "performance",
    }
    query = urllib.parse.urlencode({"g0.expr": rule["expr"], "g0.tab": "1"})
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {k: expand(v) for k, v in rule["annotations"].items()},
        "startsAt": "2025-10-10T14:30:00.123456789Z",
        "endsAt": "2025-10-10T14:34:00.123456789Z",
        "generatorURL": f"http://prometheus.example.internal:9090/graph?{query}",
        "fingerprint": f"{n:016x}",
    }


def test_a_full_webhook_payload_fits_the_remediator_body_limit(am_config, rules):
    (receiver,) = [r for r in am_config["receivers"] if r["name"] == "remediator"]
    max_alerts = receiver["webhook_configs"][0]["max_alerts"]
    worst = max(rules, key=lambda r: len(_go_json(_worst_alert(r, 0))))
    alert = _worst_alert(worst, 0)
    # The budget alertmanager.yml states: 8 KiB an alert, 10 KiB of envelope.
    assert len(_go_json(alert)) <= 8 * 1024
    assert max_alerts * 8 * 1024 + 10 * 1024 <= RemediatorSettings().max_body_bytes
    payload = {
        "receiver": "remediator",
        "status": "firing",
        "alerts": [_worst_alert(worst, n) for n in range(max_alerts)],
        "groupLabels": {"alertname": worst["alert"], "instance": LONG},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.example.internal:9093",
        "version": "4",
        "groupKey": f'{{}}/{{remediate="true"}}:{{alertname="{worst["alert"]}", '
        f'instance="{LONG}"}}',
        "truncatedAlerts": 1000,
    }
    assert len(_go_json(payload)) <= RemediatorSettings().max_body_bytes


def test_templates_render_the_rules_annotations(amtool, rules, tmp_path):
    (rule,) = [r for r in rules if r["alert"] == "RedisDown"]
    alert = {
        "status": "firing",
        "labels": _labels(rule),
        "annotations": {**rule["annotations"], "summary": "Redis redis is down"},
        "startsAt": "2025-10-12T02:30:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    data = {
        "receiver": "oncall",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": "RedisDown", "instance": "redis"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://127.0.0.1:9093",
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    rendered = {}
    for name in ("title", "text"):
        result = _run(
            [
                amtool,
                "template",
                "render",
                f"--template.glob={ALERTS / 'templates' / '*.tmpl'}",
                f'--template.text={{{{ template "redis_autoheal.{name}" . }}}}',
                f"--template.data={tmp_path / 'data.json'}",
            ]
        )
        assert result.returncode == 0, result.stderr
        rendered[name] = result.stdout
    assert rendered["title"] == "[FIRING:1] RedisDown redis: Redis redis is down"
    assert "FIRING critical: Redis redis is down" in rendered["text"]
    assert rule["annotations"]["description"] in rendered["text"]
    assert f"Runbook: {rule['annotations']['runbook_url']}" in rendered["text"]


# -- a real Alertmanager, every receiver rewritten to the recorder --------------------------

# Seconds: the on-call grace of 2m, shortened. Long enough that auto-recovery (an alert resolved
# as soon as the remediator heard of it) beats it on a loaded machine.
GRACE = 20


def _loopback_config(config: dict, recorder: Recorder, token_file, *, maintenance: bool) -> dict:
    """The shipped config with each receiver a webhook to `recorder`, minutes made seconds (the
    on-call grace still the longest), and the maintenance windows always or never open."""
    config = copy.deepcopy(config)
    del config["global"]  # SMTP: no e-mail receiver is left to use it
    config["templates"] = [str(ALERTS / "templates" / "*.tmpl")]
    receivers = []
    for receiver in config["receivers"]:
        hook = {"url": f"{recorder.url}/{receiver['name']}", "send_resolved": True}
        if receiver["name"] == "remediator":
            shipped = receiver["webhook_configs"][0]
            auth = {**shipped["http_config"]["authorization"], "credentials_file": str(token_file)}
            hook = {
                **shipped,
                **hook,
                "http_config": {**shipped["http_config"], "authorization": auth},
            }
        receivers.append({"name": receiver["name"], "webhook_configs": [hook]})
    config["receivers"] = receivers
    for route in _routes(config["route"]):
        route["group_wait"] = f"{GRACE}s" if route.get("group_wait") == "2m" else "1s"
        route["group_interval"] = "1s"
        route["repeat_interval"] = "1h"
    window = (
        [{"times": [{"start_time": "00:00", "end_time": "24:00"}]}]
        if maintenance
        else [{"years": ["1999"]}]
    )
    config["time_intervals"] = [
        {"name": i["name"], "time_intervals": window} for i in config["time_intervals"]
    ]
    # Nothing may be sent anywhere but the recorder.
    for path, value in _walk(config):
        assert not path.endswith(("email_configs", "pagerduty_configs", "slack_configs")), path
        if path.endswith(".url"):
            assert str(value).startswith(recorder.url), path
    return config


@pytest.fixture
def alertmanager(tmp_path, am_config, request):
    binary = require_binary("prometheus-alertmanager")
    token = tmp_path / "webhook.token"
    token.write_text("s3cret-token\n")
    with Recorder() as recorder:
        config = _loopback_config(am_config, recorder, token, maintenance=request.param)
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
        with local_alertmanager(binary, tmp_path) as url:
            yield url, recorder, tmp_path / "alertmanager.log"


def _post(
    url: str, rules: list[dict], alert: str, instance: str, severity: str = "", **extra: str
) -> dict:
    rule = next(
        r for r in rules if r["alert"] == alert and severity in ("", r["labels"]["severity"])
    )
    labels = {**_labels(rule, instance), **extra}
    now = datetime.now(UTC).isoformat()
    post_json(
        f"{url}/api/v2/alerts",
        [{"labels": labels, "annotations": rule["annotations"], "startsAt": now}],
    )
    return labels


def _resolve(url: str, labels: dict) -> None:
    now = datetime.now(UTC).isoformat()
    post_json(f"{url}/api/v2/alerts", [{"labels": labels, "startsAt": now, "endsAt": now}])


def _got(recorder: Recorder, receiver: str) -> set[tuple[str, str, str, str]]:
    return {
        (a["labels"]["alertname"], a["labels"]["instance"], a["labels"]["severity"], a["status"])
        for _, body in recorder.received(f"/{receiver}")
        for a in body["alerts"]
    }


def _will_send(url: str) -> tuple[dict[str, set[tuple[str, str, str]]], set[tuple[str, str, str]]]:
    """What Alertmanager holds for each receiver, not inhibited (so it sends it), and what it
    holds inhibited, by its own API."""
    sends: dict[str, set[tuple[str, str, str]]] = {}
    inhibited: set[tuple[str, str, str]] = set()
    for group in get_json(f"{url}/api/v2/alerts/groups"):
        for a in group["alerts"]:
            alert = (a["labels"]["alertname"], a["labels"]["instance"], a["labels"]["severity"])
            if a["status"]["inhibitedBy"]:
                inhibited.add(alert)
            else:
                sends.setdefault(group["receiver"]["name"], set()).add(alert)
    return sends, inhibited


@pytest.mark.parametrize("alertmanager", [False], indirect=True, ids=["outside-maintenance"])
def test_real_alertmanager_routes_and_inhibits(alertmanager, rules):
    url, recorder, _ = alertmanager
    _post(url, rules, "RedisDown", "redis")
    _post(url, rules, "RedisClientsHigh", "redis", "warning")  # inhibited by RedisDown
    _post(url, rules, "RedisMemoryHigh", "cache", "warning")  # inhibited by its critical
    _post(url, rules, "RedisMemoryHigh", "cache", "critical")
    _post(url, rules, "RedisOpsHigh", "cache", "warning")
    _post(url, rules, "RedisSshUnreachable", "vm3")
    _post(url, rules, "RedisServiceFailed", "vm3", unit="redis-server", state="failed")
    _post(url, rules, "RedisAutohealExporterDown", "127.0.0.1:9121")
    _post(url, rules, "RedisProbeFailed", "redis", "warning", layer="systemd", job="redis-systemd")
    quick = _post(
        url, rules, "RedisServiceInactive", "quick", unit="redis-server", state="inactive"
    )
    # Auto-recovery fixes `quick` within the grace: the remediator hears of it, on-call never.
    wait_until(
        lambda: (
            ("RedisServiceInactive", "quick", "critical", "firing") in _got(recorder, "remediator")
        ),
        HANG,
        "the remediator to get RedisServiceInactive",
    )
    _resolve(url, quick)
    # What Alertmanager will send, by its API, once it holds the 9 alerts still firing: all
    # that reaches a receiver from now on is in here (quick's resolution aside).
    sends = {
        "remediator": {("RedisDown", "redis", "critical")},
        "oncall": {
            ("RedisDown", "redis", "critical"),
            ("RedisMemoryHigh", "cache", "critical"),
            ("RedisSshUnreachable", "vm3", "critical"),
            ("RedisAutohealExporterDown", "127.0.0.1:9121", "critical"),
        },
        "ops": {("RedisOpsHigh", "cache", "warning")},
    }
    inhibited = {
        ("RedisClientsHigh", "redis", "warning"),  # by RedisDown
        ("RedisMemoryHigh", "cache", "warning"),  # by its critical
        ("RedisServiceFailed", "vm3", "critical"),  # by RedisSshUnreachable
        ("RedisProbeFailed", "redis", "warning"),  # by RedisAutohealExporterDown
    }
    # Alertmanager processes posted alerts in the background: wait until it holds them all.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: _will_send(url) == (sends, inhibited), HANG, "the alerts grouped")
    assert _will_send(url) == (sends, inhibited)
    # Which arrive: every one of those (on-call's RedisDown once the grace is over), and
    # nothing else so far.
    for receiver, expected in sends.items():
        firing = {(*alert, "firing") for alert in expected}

        def arrived(r: str = receiver, f: set[tuple[str, str, str, str]] = firing) -> bool:
            return _got(recorder, r) >= f

        wait_until(
            arrived,
            GRACE + HANG,
            f"{receiver} to get {sorted(firing)}",
        )
    quick_events = {
        ("RedisServiceInactive", "quick", "critical", "firing"),
        ("RedisServiceInactive", "quick", "critical", "resolved"),
    }
    assert _got(recorder, "remediator") - quick_events == {
        ("RedisDown", "redis", "critical", "firing")
    }
    assert _got(recorder, "oncall") == {(*alert, "firing") for alert in sends["oncall"]}
    assert _got(recorder, "ops") == {("RedisOpsHigh", "cache", "warning", "firing")}
    for headers, body in recorder.received("/remediator"):
        assert headers["Authorization"] == "Bearer s3cret-token"
        assert body["version"] == "4"
        assert body["truncatedAlerts"] == 0
        assert body["groupLabels"].keys() == {"alertname", "instance"}


@pytest.mark.parametrize("alertmanager", [True], indirect=True, ids=["in-maintenance"])
def test_real_alertmanager_mutes_only_remediation_in_maintenance(alertmanager, rules):
    url, recorder, log = alertmanager
    _post(url, rules, "RedisDown", "redis")
    _post(url, rules, "RedisOpsHigh", "cache", "warning")
    wait_until(
        lambda: ("RedisDown", "redis", "critical", "firing") in _got(recorder, "oncall"),
        GRACE + HANG,
        "on-call to be paged for RedisDown",
    )
    wait_until(lambda: bool(_got(recorder, "ops")), HANG, "ops to get RedisOpsHigh")
    # The remediator's group has been flushed, and muted (only its route has mute intervals),
    # long before on-call's grace ended: nothing went to the remediator.
    wait_until(
        lambda: "route is within mute time" in log.read_text(),
        HANG,
        "Alertmanager to mute the remediator's group",
    )
    assert _got(recorder, "remediator") == set()
    assert _got(recorder, "ops") == {("RedisOpsHigh", "cache", "warning", "firing")}
