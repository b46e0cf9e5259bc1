"""The `redis-autoheal` subcommands of the remediator: `remediator`, `breaker`, `health` and
`audit summary`.

`health` and `audit summary` need no running remediator: `health` probes the targets itself
(as the exporter does) and reads the breaker state and the audit log from their files;
`audit summary` reads the audit log and its backups.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import json
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis_autoheal.config import Config, load_config
from redis_autoheal.errors import AutohealError, ConfigError
from redis_autoheal.flags import Listen, add_listen
from redis_autoheal.probe import Prober
from redis_autoheal.sshpool import SshPool
from remediator import health, review, shutdown
from remediator.app import create_app, drain
from remediator.audit import Actor, AuditWriter
from remediator.coordination import breaker_store
from remediator.events import CircuitBreaker
from remediator.security import exposure_warning

if TYPE_CHECKING:
    from redis_autoheal.config import Target
    from remediator.breaker import BreakerState

AddConfig = Callable[[argparse.ArgumentParser], None]
UNKNOWN = 3  # the Nagios exit code of a check that cannot tell
log = logging.getLogger(__name__)


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    listen = Listen(args.listen, "remediator.listen", config.remediator.listen)
    settings = config.remediator
    context = None
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is not None and key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # TLS 1.2 at least
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            problem = f"cannot load {cert} and {key}: {e}"
            raise ConfigError("remediator.tls_cert_file", problem) from None
    app = create_app(config)
    mode = " (dry run: only read-only commands)" if settings.dry_run else ""
    scheme = "HTTPS" if context else "HTTP"
    host, port = listen.host, listen.port
    listen.watch(app)

    def listening() -> None:
        listen.serving()
        warning = exposure_warning(host, tls=context is not None)
        if warning:
            log.warning("%s", warning)
        print(
            f"remediator: {len(config.targets)} target(s), listening on {host}:{port} over "
            f"{scheme}{mode}",
            flush=True,
        )

    with listen.bind_errors():
        asyncio.run(
            shutdown.serve(
                app, host, port, context, functools.partial(drain, app), listening=listening
            )
        )
    return 0


def _target(config: Config, name: str) -> Target:
    target = config.target(name)
    if target is None:
        known = ", ".join(t.name for t in config.targets)
        raise ConfigError("--target", f"no target {name!r} in {config.source} (known: {known})")
    return target


def _describe(name: str, state: BreakerState, window: float) -> str:
    now = time.time()
    recent = sum(1 for t in state.recoveries if now - t < window)
    if not state.open:
        return f"{name}: closed ({recent} recovery(ies) in the last {window:g}s)"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.opened_at or 0))
    return f"{name}: OPEN since {since}: {state.reason}; auto-recovery is off until reset"


def _breaker(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = breaker_store(config, trail=f"{socket.gethostname()}:cli")
    window = config.circuit_breaker.window_seconds
    if args.action == "status":
        names = (
            [_target(config, args.target).name] if args.target else [t.name for t in config.targets]
        )
        for name in names:
            print(_describe(name, store.state(name), window))
        return 0
    if not args.target:
        raise ConfigError("--target", "breaker reset needs --target NAME")
    name = _target(config, args.target).name
    before = store.state(name)
    # Audited first, as everything else: no record, no reset (with replicas: both at once).
    writer = AuditWriter(config.audit)
    writer.open()
    user = getpass.getuser()
    event = CircuitBreaker(
        service=name,
        operation="reset",
        user=Actor(id=user, email=None, role="cli"),
        source_ip="local",
        success=True,
        was_open=before.open,
        reason=before.reason,
    )
    if not store.commits_events:
        writer.write_sync(event)
    store.reset(name, event)
    if store.commits_events:
        writer.write_sync(event)
    print(f"{name}: circuit breaker reset (was {'open' if before.open else 'closed'})")
    return 0


async def _check(config: Config, targets: list[Target]) -> list[health.TargetHealth]:
    pool = SshPool()
    store = breaker_store(config)
    probers = [Prober(t, config.health_check, pool.host(t.ssh) if t.ssh else None) for t in targets]
    try:
        return list(
            await asyncio.gather(
                *(
                    health.check_target(
                        p,
                        breaker=store,
                        breaker_settings=config.circuit_breaker,
                        audit=config.audit,
                    )
                    for p in probers
                )
            )
        )
    finally:
        await asyncio.gather(*(p.close() for p in probers))
        await pool.close()


def _health(args: argparse.Namespace) -> int:
    """The health report and its status as exit code; 3 (Nagios's UNKNOWN) with the reason as
    the status line when the health cannot be told: no config, an unknown target, a crash."""
    try:
        return _report_health(args)
    except BrokenPipeError:
        raise
    except Exception as e:  # whatever stopped the check, the state is unknown
        log.debug("the health check failed", exc_info=True)
        reason = str(e) if isinstance(e, AutohealError) else f"{type(e).__name__}: {e}"
        if args.json:  # stdout is for JSON: say it where every command's errors go
            print(f"redis-autoheal: error: {reason}", file=sys.stderr)
        else:
            print(f"REDIS UNKNOWN: {reason}")
        return UNKNOWN


def _report_health(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.log_level != "debug":  # each failure is in the report: no second copy on stderr
        logging.getLogger("redis_autoheal.probe").setLevel(logging.ERROR)
    targets = [_target(config, args.target)] if args.target else list(config.targets)
    reports = asyncio.run(_check(config, targets))
    worst = max(r.status for r in reports)
    if args.json:
        print(json.dumps([r.as_json() for r in reports], indent=2))
    else:
        # Nagios reads the first line: the overall status and the targets not healthy.
        bad = [f"{r.target} {r.status.label}" for r in reports if r.status]
        print(f"REDIS {worst.name}: " + (", ".join(bad) or f"{len(reports)} target(s) healthy"))
        for r in reports:
            print(health.render(r))
    return int(worst)


def _since(value: str) -> str:
    try:
        review.parse_since(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


BUSINESS_DEFAULTS = {"hours": "08:00-18:00", "days": "mon-fri", "zone": "UTC"}
BUSINESS_FLAGS = {  # flag -> (its part of review.BusinessHours.parse, metavar, help)
    "--business-hours": ("hours", "HH:MM-HH:MM", "operations outside these hours are listed"),
    "--business-days": ("days", "DAYS", "business days, like mon-fri or mon,tue,thu"),
    "--timezone": ("zone", "ZONE", "the time zone of the business hours, e.g. Europe/Berlin"),
}


def _business(part: str) -> Callable[[str], str]:
    """An argparse type checking one of the business-hours flags on its own, so that its
    error names that flag."""

    def check(value: str) -> str:
        try:
            review.BusinessHours.parse(**(BUSINESS_DEFAULTS | {part: value}))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return check


def _audit_summary(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    hours = review.BusinessHours.parse(args.business_hours, args.business_days, args.timezone)
    summary = review.summarize(config, args.since, hours=hours)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        print(review.render(summary))
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_config: AddConfig
) -> None:
    """Add this service's subcommands; `add_config` adds the shared --config option."""
    p = sub.add_parser(
        "remediator", help="receive Alertmanager's webhooks and heal the targets over SSH"
    )
    add_config(p)
    add_listen(p, "remediator.listen", "127.0.0.1:9122")
    p.set_defaults(func=_serve)

    p = sub.add_parser("breaker", help="show or reset a target's circuit breaker")
    p.add_argument("action", choices=("status", "reset"))
    add_config(p)
    p.add_argument("--target", metavar="NAME", help="the target (status: default all)")
    p.set_defaults(func=_breaker)

    p = sub.add_parser(
        "health",
        help="probe the three health layers now; exit 0 healthy, 1 warning, 2 critical, 3 unknown",
        description="Probe each target's connectivity, systemd and performance layers now "
        "(no running remediator needed), judge them by the runbook's thresholds, and show the "
        "circuit breaker and the last recoveries. Exit code: the worst status (Nagios: 0 "
        "healthy, 1 warning, 2 critical), or 3 unknown when it cannot tell (a config that "
        "does not load, an unknown target, a bad flag).",
    )
    add_config(p)
    p.add_argument("--target", metavar="NAME", help="only this target (default: all)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print a list of the API's health documents, one a target (without the "
        "recovery_in_progress and operation_in_progress only a running remediator knows)",
    )
    p.set_defaults(func=_health, error_status=UNKNOWN)  # usage errors too (redis_autoheal.cli)

    p = sub.add_parser("audit", help="review the audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    p = audit_sub.add_parser(
        "summary",
        help="the runbook's daily / weekly / monthly review",
        description="Summarise the audit log (the live file and its gzip backups) over a "
        "window: operations by type and user, failures, auto-recoveries by level, success "
        "rates, recovery times, operations outside business hours, bursts of 3+ in a minute.",
    )
    add_config(p)
    p.add_argument(
        "--since",
        type=_since,
        default="24h",
        metavar="24h|7d|30d",
        help="how far back: the daily, weekly or monthly review, or any N h/d/w (default 24h)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    for flag, (part, metavar, help_text) in BUSINESS_FLAGS.items():
        default = BUSINESS_DEFAULTS[part]
        p.add_argument(
            flag,
            default=default,
            type=_business(part),
            metavar=metavar,
            help=f"{help_text} (default {default})",
        )
    p.set_defaults(func=_audit_summary)
