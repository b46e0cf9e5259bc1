"""The `redis-autoheal` subcommands of the remediator: `remediator` and `breaker`."""

from __future__ import annotations

import argparse
import getpass
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from redis_autoheal.config import Config, load_config, parse_listen
from redis_autoheal.errors import ConfigError
from remediator.app import create_app
from remediator.audit import Actor, AuditWriter, audit_event
from remediator.breaker import BreakerState, BreakerStore

if TYPE_CHECKING:
    from redis_autoheal.config import Target

AddConfig = Callable[[argparse.ArgumentParser], None]


def _listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    host, port = args.listen or parse_listen(config.remediator.listen)
    settings = config.remediator
    context = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    app = create_app(config)
    mode = " (dry run: only read-only commands)" if settings.dry_run else ""
    print(f"remediator: {len(config.targets)} target(s), listening on {host}:{port}{mode}")
    web.run_app(app, host=host, port=port, ssl_context=context, print=None, access_log=None)
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
    store = BreakerStore(config.remediator.state_dir, config.circuit_breaker)
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
    # Audited first, as everything else: no record, no reset.
    writer = AuditWriter(config.audit)
    writer.open()
    user = getpass.getuser()
    writer.write_sync(
        audit_event(
            "circuit_breaker",
            service=name,
            operation="reset",
            user=Actor(id=user, email=None, role="cli"),
            source_ip="local",
            success=True,
            was_open=before.open,
            reason=before.reason,
        )
    )
    store.reset(name)
    print(f"{name}: circuit breaker reset (was {'open' if before.open else 'closed'})")
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_config: AddConfig
) -> None:
    """Add this service's subcommands; `add_config` adds the shared --config option."""
    p = sub.add_parser(
        "remediator", help="receive Alertmanager's webhooks and heal the targets over SSH"
    )
    add_config(p)
    p.add_argument(
        "--listen",
        type=_listen,
        metavar="HOST:PORT",
        help="where to listen (default: remediator.listen of the config, 127.0.0.1:9122)",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser("breaker", help="show or reset a target's circuit breaker")
    p.add_argument("action", choices=("status", "reset"))
    add_config(p)
    p.add_argument("--target", metavar="NAME", help="the target (status: default all)")
    p.set_defaults(func=_breaker)
