"""The remediator's aiohttp app: `create_app(config)`, its routes and its long-lived parts.

The parts open at start-up in the order of `cleanup_ctx` and close in the reverse one: the
coordination (audit log, breaker state: remediator.coordination), the targets' controls, the
dispatcher, the manual operations, the summaries of refused requests; last, what the previous
run left unfinished is re-checked (remediator.resume). A part that cannot open stops start-up
with the reason. SIGTERM drains before any of that closes (`drain`, remediator.shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from redis_autoheal.config import Config, read_remediator_secrets
from redis_autoheal.probe import Prober
from redis_autoheal.sshpool import SshPool
from remediator import api, openapi, resume, webhook
from remediator.control import TargetControl
from remediator.coordination import audit_writer, breaker_store, coordination_for
from remediator.dispatch import Dispatcher
from remediator.keys import (
    AUDIT,
    BREAKER,
    CONFIG,
    CONTROLS,
    COORDINATION,
    DISPATCHER,
    METRICS,
    OPENAPI,
    OPERATIONS,
    PROBERS,
    SHUTDOWN,
    USERS,
    VIOLATIONS,
    WEBHOOK_TOKEN,
)
from remediator.metrics import Metrics
from remediator.operations import Operations
from remediator.problems import api_problems
from remediator.recovery import RecoveryEngine
from remediator.security import allowed_networks
from remediator.shutdown import Shutdown
from remediator.users import UserDirectory, token_digest
from remediator.violations import ViolationLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiohttp.typedefs import Handler


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves; 503 once it is shutting down (admitting nothing)."""
    if request.app[SHUTDOWN].stopping.is_set():
        return web.Response(status=503, text="shutting down\n")
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    """The metrics of docs/reference.md, in Prometheus' text format (in a thread: the breakers'
    gauges read their state, from etcd with replicas)."""
    body = await asyncio.to_thread(generate_latest, request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def refuse_when_stopping(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every POST admits work: once shutting down, each answers 503 (remediator.shutdown)."""
    return await request.app[SHUTDOWN].admitting(request, handler)


def setup_routes(app: web.Application) -> None:
    """Every route of the remediator, in one place."""
    app.router.add_post(webhook.PATH, webhook.receive)
    api.setup_routes(app)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)


async def _coordination(app: web.Application) -> AsyncIterator[None]:
    coordination = app[COORDINATION]
    await coordination.open()
    yield
    await coordination.close()


async def _targets(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    coordination = app[COORDINATION]
    pool = SshPool()
    # One Redis client per target, for its health checks and the PINGs that verify actions,
    # with connections kept for the PINGs: a flood of /health requests cannot delay them.
    probers = {
        t.name: Prober(
            t, config.health_check, pool.host(t.ssh) if t.ssh else None, ping_connections=2
        )
        for t in config.targets
    }
    app[PROBERS] = probers
    app[CONTROLS] = {
        t.name: TargetControl(
            t,
            pool.host(t.ssh) if t.ssh else None,
            coordination.audit,
            app[METRICS],
            dry_run=config.remediator.dry_run,
            prober=probers[t.name],
            lock=coordination.lock(t.name),
            start_budget=coordination.start_budget(t.name),
            fence=coordination.check_fence,
            fenced_command=config.coordination.etcd.fenced_command,
        )
        for t in config.targets
    }
    yield
    await asyncio.gather(*(p.close() for p in probers.values()))
    await pool.close()


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    coordination = app[COORDINATION]
    engine = RecoveryEngine(
        config.auto_recovery,
        coordination.breaker,
        coordination.audit,
        app[METRICS],
        ping_timeout_seconds=config.health_check.ping_timeout_seconds,
        stopping=app[SHUTDOWN].stopping,
    )
    controls = app[CONTROLS]
    dispatcher = Dispatcher(controls, engine, coordination, enabled=config.auto_recovery.enabled)
    app[DISPATCHER] = dispatcher
    coordination.adopt(dispatcher.resume)
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
        stopping=app[SHUTDOWN].stopping,
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


async def _resume(app: web.Application) -> AsyncIterator[None]:
    await resume.resume(app[CONFIG], app[AUDIT], app[DISPATCHER])
    yield


async def drain(app: web.Application, hurry: asyncio.Event) -> None:
    """On SIGTERM, before the parts close: stop admitting, give the recoveries and operations
    in progress the grace to finish, then interrupt them (remediator.shutdown)."""
    dispatcher, operations = app[DISPATCHER], app[OPERATIONS]

    def running() -> list[asyncio.Future[Any]]:
        return [*dispatcher.in_progress(), *operations.in_progress()]

    async def interrupt() -> None:
        await asyncio.gather(dispatcher.close(), operations.close())

    await app[SHUTDOWN].drain(running, interrupt, hurry)


def create_app(config: Config) -> web.Application:
    """The remediator: reads its secrets now, opens the rest when the app starts."""
    webhook_token, user_tokens = read_remediator_secrets(config)
    settings = config.remediator
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            api_problems,
            webhook.count_webhook_requests,
            allowed_networks,
            refuse_when_stopping,
        ],
    )
    app[CONFIG] = config
    app[SHUTDOWN] = Shutdown(settings.shutdown_grace_seconds)
    app[WEBHOOK_TOKEN] = token_digest(webhook_token)
    app[USERS] = UserDirectory(config.users, user_tokens, config.permissions)
    app[OPENAPI] = openapi.build(config, app[USERS])
    names = [t.name for t in config.targets]
    breaker = breaker_store(config)
    app[METRICS] = Metrics(names, breaker.is_open)
    audit = audit_writer(config, app[METRICS].audit_write_errors.inc)
    coordination = coordination_for(config, audit, breaker)
    app[METRICS].coordination_up.set_function(lambda: float(coordination.up))
    app[COORDINATION] = coordination
    app[BREAKER] = coordination.breaker  # the names the rest of the app reads them by
    app[AUDIT] = coordination.audit
    app[VIOLATIONS] = ViolationLog(app[AUDIT])
    app.cleanup_ctx.extend(
        [
            _coordination,
            _targets,
            _dispatcher,
            _operations,
            _violation_summaries,
            _resume,
        ]
    )
    setup_routes(app)
    return app
