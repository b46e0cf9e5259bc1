"""The remediator's aiohttp app: `create_app(config)`, its routes and its long-lived parts.

Routes: the webhook (remediator.webhook), the operator API (remediator.api), /metrics and
/healthz. Long-lived parts are opened at start-up and closed at shutdown by `cleanup_ctx`
generators, in this order (and closed in the reverse one): the audit log, the circuit-breaker
state, the SSH connections, Redis clients and health probers of the targets, the dispatcher
with its recoveries, the manual operations in progress, and the summaries of refused requests
(remediator.violations, which write what they counted at shutdown). A part
that cannot open (an audit path that cannot be written, an unreadable breaker state) stops the
start-up with the reason, rather than leaving a remediator that would have to refuse all work.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from exporter.probe import TargetProber
from redis_autoheal.config import Config, read_remediator_secrets
from redis_autoheal.ssh import SshPool
from remediator import api, openapi, webhook
from remediator.audit import AuditWriter
from remediator.breaker import BreakerStore
from remediator.control import TargetControl
from remediator.dispatch import Dispatcher
from remediator.keys import (
    AUDIT,
    BREAKER,
    CONFIG,
    CONTROLS,
    DISPATCHER,
    METRICS,
    OPENAPI,
    OPERATIONS,
    PROBERS,
    USERS,
    VIOLATIONS,
    WEBHOOK_TOKEN,
)
from remediator.metrics import Metrics
from remediator.operations import Operations
from remediator.problems import api_problems
from remediator.recovery import RecoveryEngine
from remediator.security import allowed_networks
from remediator.users import UserDirectory, token_digest
from remediator.violations import ViolationLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves."""
    del request
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    """The metrics of CONTRACT.md, in Prometheus' text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_routes(app: web.Application) -> None:
    """Every route of the remediator, in one place."""
    app.router.add_post(webhook.PATH, webhook.receive)
    api.setup_routes(app)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)


async def _audit_log(app: web.Application) -> AsyncIterator[None]:
    writer = app[AUDIT]
    await asyncio.to_thread(writer.open)
    yield
    await writer.close()


async def _breaker_state(app: web.Application) -> AsyncIterator[None]:
    await asyncio.to_thread(app[BREAKER].check)
    yield


async def _targets(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    pool = SshPool()
    controls: dict[str, TargetControl] = {
        t.name: TargetControl(
            t,
            pool.host(t.ssh) if t.ssh else None,
            app[AUDIT],
            app[METRICS],
            dry_run=config.remediator.dry_run,
            ping_timeout_seconds=config.health_check.ping_timeout_seconds,
        )
        for t in config.targets
    }
    app[CONTROLS] = controls
    app[PROBERS] = {
        t.name: TargetProber(t, config.health_check, pool.host(t.ssh) if t.ssh else None)
        for t in config.targets
    }
    yield
    await asyncio.gather(
        *(c.close() for c in controls.values()), *(p.close() for p in app[PROBERS].values())
    )
    await pool.close()


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    engine = RecoveryEngine(
        config.auto_recovery,
        app[BREAKER],
        app[AUDIT],
        app[METRICS],
        ping_timeout_seconds=config.health_check.ping_timeout_seconds,
    )
    controls = app[CONTROLS]
    dispatcher = Dispatcher(controls, engine, app[BREAKER], enabled=config.auto_recovery.enabled)
    app[DISPATCHER] = dispatcher
    yield
    await dispatcher.close()


async def _operations(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[DISPATCHER]
    operations = Operations(
        app[CONFIG],
        app[CONTROLS],
        app[BREAKER],
        app[AUDIT],
        recovery_pending=lambda name: dispatcher.running(name) is not None,
    )
    app[OPERATIONS] = operations
    yield
    await operations.close()


async def _violation_summaries(app: web.Application) -> AsyncIterator[None]:
    summaries = asyncio.create_task(app[VIOLATIONS].run(), name="violation-summaries")
    yield
    summaries.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await summaries
    await app[VIOLATIONS].close()  # before the audit log closes: it is opened first


def create_app(config: Config) -> web.Application:
    """The remediator: reads its secrets now, opens the rest when the app starts."""
    webhook_token, user_tokens = read_remediator_secrets(config)
    settings = config.remediator
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[api_problems, webhook.count_webhook_requests, allowed_networks],
    )
    app[CONFIG] = config
    app[WEBHOOK_TOKEN] = token_digest(webhook_token)
    app[USERS] = UserDirectory(config.users, user_tokens, config.permissions)
    app[OPENAPI] = openapi.build(config, app[USERS])
    breaker = BreakerStore(settings.state_dir, config.circuit_breaker)
    app[BREAKER] = breaker
    app[METRICS] = Metrics([t.name for t in config.targets], breaker.is_open)
    app[AUDIT] = AuditWriter(config.audit, on_error=app[METRICS].audit_write_errors.inc)
    app[VIOLATIONS] = ViolationLog(app[AUDIT])
    app.cleanup_ctx.extend([_audit_log, _breaker_state, _targets, _dispatcher, _operations])
    app.cleanup_ctx.append(_violation_summaries)
    setup_routes(app)
    return app
