"""The exporter's aiohttp application: routes, and the connections kept for its lifetime."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from exporter import selfmetrics, views
from exporter.probe import TargetProber
from exporter.typedefs import CONFIG, PROBERS
from redis_autoheal.ssh import SshPool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redis_autoheal.config import Config


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/probe", views.probe)
    app.router.add_get("/metrics", views.metrics)
    app.router.add_get("/healthz", views.healthz)


async def _connections(app: web.Application) -> AsyncIterator[None]:
    """One Redis client per target and one SSH connection per host, kept and reused.

    Nothing connects here: each connection opens on its first probe, so a target that is
    down at start-up does not delay the others, and reopens after the target comes back.
    """
    config = app[CONFIG]
    ssh = SshPool()
    app[PROBERS] = {
        t.name: TargetProber(t, config.health_check, None if t.ssh is None else ssh.host(t.ssh))
        for t in config.targets
    }
    selfmetrics.TARGETS.set(len(config.targets))
    yield
    await asyncio.gather(*(p.close() for p in app[PROBERS].values()))
    await ssh.close()


def create_app(config: Config) -> web.Application:
    """The exporter for the targets of `config`."""
    app = web.Application()
    app[CONFIG] = config
    setup_routes(app)
    app.cleanup_ctx.append(_connections)
    return app
