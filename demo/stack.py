"""The whole stack on one machine: test host, exporter, remediator, Prometheus, Alertmanager.

    with Stack(StackOptions()) as stack:   # started and live: Redis answers, alerts can fire
        stack.host.kill9()
        ...                                # stack.prom_query(), stack.am_alerts(), audit_events()

Everything listens on 127.0.0.1 at ports free when it starts (so tests can run beside a demo);
the test host is its own network namespace at 198.18.N.2. Nothing is sent anywhere else:
on-call and ops are the local `Sink`. The stack's files (configs, token files of mode 600, the
audit log, the breaker state, Prometheus' and Alertmanager's storage, each daemon's log) live
in one temporary directory. `close()` stops everything in reverse order, also after a failed
start, and removes the directory and the test host.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from demo import configs
from demo.configs import FAST, TARGET, Cadence, Ports
from demo.loopback import free_port, get_json, post_json
from demo.procs import Daemon, StackError, wait_until
from demo.sink import Sink
from testhost.files import HostOptions
from testhost.host import TestHost

if TYPE_CHECKING:
    from collections.abc import Callable

PROMETHEUS = Path("/usr/bin/prometheus")
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")  # Debian's name for alertmanager
PORT_ATTEMPTS = 3  # another process may take a port between our picking it and binding it
LIVE_TIMEOUT = 90.0


def autoheal_command() -> Path:
    """The `redis-autoheal` console script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "redis-autoheal"
    found = beside if beside.exists() else shutil.which("redis-autoheal")
    if found is None:
        raise StackError("redis-autoheal is not installed: run scripts/setup.sh")
    return Path(found)


@dataclass(frozen=True)
class StackOptions:
    """How to run the stack; the defaults are the fast cadence and the runbook's limits."""

    cadence: Cadence = FAST
    circuit_breaker: dict[str, float] | None = None  # overrides of the runbook's 3 in 300 s
    auto_recovery: dict[str, float] | None = None  # overrides of demo/configs.py's
    maintenance_windows: bool = False  # keep the remediator's mute_time_intervals
    # The exporter follows the unit and pushes RedisServiceInactive/Failed at once
    # (exporter.follow); False: those alerts come from the rules only (the demo's story).
    follow: bool = False
    follow_push_to: str | None = None  # where it pushes them; None: the stack's Alertmanager
    host_options: HostOptions = field(default_factory=HostOptions)
    keep_workdir: bool = False  # leave the directory (configs, logs) behind for a post-mortem
    say: Callable[[str], None] | None = None  # progress, one line per step


class Stack:
    """The running stack; see the module docstring."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.workdir = Path(tempfile.mkdtemp(prefix="redis-autoheal-stack-"))
        self.host: TestHost | None = None
        self.sink = Sink()
        self.daemons: list[Daemon] = []
        self.ports: Ports | None = None
        self.config_path = self.workdir / "redis-autoheal.yml"
        self.audit_path = self.workdir / "audit" / "redis_service_management.log"
        self.started_at = time.time()

    # --- starting and stopping ---------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _say(self, text: str) -> None:
        if self.options.say is not None:
            self.options.say(text)

    def start(self) -> Self:
        """Start every part and wait until the pipeline is live; on any error, clean up."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self._say("building the test host (VM3 in a box: netns, sshd, sudo, redis-server)")
        self.host = TestHost.build(self.options.host_options)
        self._say(f"test host: {self.host.address} (sshd :22, redis-server :6379)")
        self.sink.start()
        secret_files = configs.write_secrets(self.workdir / "secrets")
        rules_file = configs.rules(self.workdir / "alerts", self.options.cadence)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.ports = Ports(*(free_port() for _ in range(4)))
            self._write_configs(secret_files, rules_file)
            try:
                self._start_daemons()
                break
            except StackError as e:
                if attempt == PORT_ATTEMPTS or "address already in use" not in str(e):
                    raise
                self._say(f"a port was taken meanwhile ({e}); trying other ports")
                self._stop_daemons()
        self._say("waiting for the first scrapes, rules and Alertmanager discovery")
        c = self.options.cadence
        # Each job's first scrape comes within one interval of the start.
        self.wait_live(max(LIVE_TIMEOUT, max(c.performance, c.systemd, c.services) + 30.0))

    def _write_configs(self, secret_files: configs.Secrets, rules_file: Path) -> None:
        assert self.host is not None
        assert self.ports is not None
        o = self.options
        configs.autoheal_config(
            self.config_path,
            self.host.target(TARGET),
            self.ports,
            secret_files=secret_files,
            state_dir=self.workdir / "state",
            audit_path=self.audit_path,
            cadence=o.cadence,
            circuit_breaker=o.circuit_breaker,
            auto_recovery=o.auto_recovery,
            follow_rules=rules_file if o.follow else None,
            follow_push_to=o.follow_push_to,
        )
        configs.prometheus_config(
            self.workdir / "prometheus" / "prometheus.yml",
            self.ports,
            o.cadence,
            rules_file,
            self.workdir / "prometheus" / "targets",
        )
        configs.alertmanager_config(
            self.workdir / "alertmanager" / "alertmanager.yml",
            self.ports,
            o.cadence,
            secret_files.webhook_token_file,
            self.sink.url,
            maintenance_windows=o.maintenance_windows,
        )

    def _daemon_specs(self) -> list[Daemon]:
        assert self.ports is not None
        p, w = self.ports, self.workdir
        autoheal = str(autoheal_command())
        config = str(self.config_path)
        return [
            Daemon(
                "exporter",
                [autoheal, "exporter", "--config", config],
                w / "exporter.log",
                f"{p.url('exporter')}/healthz",
            ),
            Daemon(
                "remediator",
                [autoheal, "remediator", "--config", config],
                w / "remediator.log",
                f"{p.url('remediator')}/healthz",
            ),
            Daemon(
                "alertmanager",
                [
                    str(ALERTMANAGER),
                    f"--config.file={w / 'alertmanager' / 'alertmanager.yml'}",
                    f"--storage.path={w / 'alertmanager' / 'data'}",
                    f"--web.listen-address=127.0.0.1:{p.alertmanager}",
                    f"--web.external-url={p.url('alertmanager')}/",
                    "--cluster.listen-address=",  # no gossip: a single, local Alertmanager
                    # Debug: its "Notify success" lines time each delivery to the millisecond.
                    "--log.level=debug",
                ],
                w / "alertmanager.log",
                f"{p.url('alertmanager')}/-/ready",
            ),
            Daemon(
                "prometheus",
                [
                    str(PROMETHEUS),
                    f"--config.file={w / 'prometheus' / 'prometheus.yml'}",
                    f"--storage.tsdb.path={w / 'prometheus' / 'data'}",
                    f"--web.listen-address=127.0.0.1:{p.prometheus}",
                    f"--web.external-url={p.url('prometheus')}/",
                ],
                w / "prometheus.log",
                f"{p.url('prometheus')}/-/ready",
            ),
        ]

    def _start_daemons(self) -> None:
        for daemon in self._daemon_specs():
            for binary in (Path(daemon.argv[0]),):
                if not binary.exists():
                    raise StackError(f"{binary} is missing: run scripts/setup.sh")
            self.daemons.append(daemon)
            daemon.start()
            self._say(f"{daemon.name}: {daemon.ready_url.rsplit('/', 1)[0]} (pid {daemon.pid})")

    def _stop_daemons(self) -> list[str]:
        problems = []
        for daemon in reversed(self.daemons):
            try:
                daemon.stop()
            except Exception as e:  # noqa: BLE001 - stop the others anyway; reported below
                problems.append(f"{daemon.name}: {e}")
        self.daemons.clear()
        return problems

    def close(self) -> None:
        """Stop everything in reverse order, even after errors; then raise the first problem.

        Safe to call again, and then it finishes what is left: a close cut short (a second
        Ctrl-C while a failed start cleans up) is completed by the caller's own close. Every
        part's stop is idempotent, so nothing is marked done before it is.
        """
        problems = self._stop_daemons()
        try:
            self.sink.stop()
        except Exception as e:  # noqa: BLE001 - go on with the host
            problems.append(f"sink: {e}")
        if self.host is not None:
            try:
                self.host.teardown()
            except Exception as e:  # noqa: BLE001 - go on with the files
                problems.append(f"test host: {e}")
        if not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise StackError("stopping the stack: " + "; ".join(problems))

    # --- liveness ----------------------------------------------------------------------------

    def check_daemons(self) -> None:
        """StackError naming the first daemon that exited, with the end of its log."""
        for daemon in self.daemons:
            if daemon.exited():
                raise StackError(f"{daemon.name} exited: {daemon.log_tail()}")

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `check` (bounded), failing fast if a daemon died meanwhile."""

        def live_check() -> bool:
            self.check_daemons()
            with contextlib.suppress(OSError, ValueError, KeyError):
                return check()
            return False

        wait_until(live_check, timeout, what)

    def wait_live(self, timeout: float = LIVE_TIMEOUT) -> None:
        """Until Prometheus scrapes all five jobs, has its rules and its Alertmanager, and sees
        Redis answering and its unit active: from then on a failure can be seen and alerted."""

        def targets_up() -> bool:
            active = self.prom_api("targets")["activeTargets"]
            return len(active) == 5 and all(t["health"] == "up" for t in active)

        def alertmanager_known() -> bool:
            return bool(self.prom_api("alertmanagers")["activeAlertmanagers"])

        def rules_loaded() -> bool:
            return bool(self.prom_api("rules")["groups"])

        def redis_seen() -> bool:
            up = self.prom_query(f'redis_up{{instance="{TARGET}"}} == 1')
            active = self.prom_query(
                f'redis_systemd_unit_state{{instance="{TARGET}", state="active"}} == 1'
            )
            return bool(up) and bool(active)

        deadline = time.monotonic() + timeout
        for check, what in (
            (targets_up, "Prometheus scraping all five jobs"),
            (alertmanager_known, "Prometheus discovering Alertmanager"),
            (rules_loaded, "Prometheus loading the rules"),
            (redis_seen, "redis_up 1 and the unit active in Prometheus"),
        ):
            self.wait_for(check, max(deadline - time.monotonic(), 1.0), what)

    # --- reading the sources -----------------------------------------------------------------

    def url(self, service: str) -> str:
        assert self.ports is not None
        return self.ports.url(service)

    def prom_api(self, path: str, **params: str) -> Any:  # noqa: ANN401 - JSON
        """`data` of Prometheus' HTTP API GET /api/v1/PATH."""
        try:
            reply = get_json(f"{self.url('prometheus')}/api/v1/{path}", params)
        except urllib.error.HTTPError as e:  # 400/422: the error is in the body
            raise StackError(
                f"Prometheus /api/v1/{path} {params}: {e.code} {e.read()[:500]!r}"
            ) from None
        if reply.get("status") != "success":
            raise StackError(f"Prometheus /api/v1/{path}: {reply}")
        return reply["data"]

    def prom_query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result (a vector, or a matrix for a range selector)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        result: list[dict[str, Any]] = self.prom_api("query", **params)["result"]
        return result

    def prom_query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        data = self.prom_api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}"
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def prom_alerts(self) -> list[dict[str, Any]]:
        """Prometheus' pending and firing alerts (/api/v1/alerts)."""
        alerts: list[dict[str, Any]] = self.prom_api("alerts")["alerts"]
        return alerts

    def am_alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's alerts (API v2 /api/v2/alerts)."""
        alerts: list[dict[str, Any]] = get_json(f"{self.url('alertmanager')}/api/v2/alerts")
        return alerts

    def am_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = get_json(f"{self.url('alertmanager')}/api/v2/alerts/groups")
        return groups

    def audit_events(self) -> list[dict[str, Any]]:
        """The remediator's audit log, JSON lines, oldest first (empty until the first event)."""
        try:
            text = self.audit_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def alertmanager_log(self) -> str:
        for daemon in self.daemons:
            if daemon.name == "alertmanager":
                return daemon.log.read_text(errors="replace")
        return ""

    def post_webhook(self, body: object = None, token: str | None = None) -> int:
        """POST `body` to the remediator's /webhook with Alertmanager's token (or `token`)."""
        if token is None:
            token = (self.workdir / "secrets" / "webhook.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        return post_json(f"{self.url('remediator')}/webhook", body or {}, headers)

    def links(self) -> dict[str, str]:
        """What to open while the stack runs."""
        # Debian's Prometheus has no React UI: its pages are the classic ones, under /classic.
        prometheus = f"{self.url('prometheus')}/classic"
        return {
            "Prometheus alerts": f"{prometheus}/alerts",
            "Prometheus graph": f"{prometheus}/graph?g0.expr=redis_up&g0.tab=0&g0.range_input=15m",
            "Prometheus targets": f"{prometheus}/targets",
            "Alertmanager": f"{self.url('alertmanager')}/#/alerts",
            "exporter probe": f"{self.url('exporter')}/probe?target={TARGET}&module=all",
            "remediator metrics": f"{self.url('remediator')}/metrics",
            "pager (on-call/ops sink)": self.sink.url,
        }
