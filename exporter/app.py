"""The exporter's aiohttp application: routes, and the connections kept for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from aiohttp import web

from exporter import views
from exporter.follow import Followers
from exporter.state import ExporterState
from exporter.typedefs import FOLLOWERS, STATE
from redis_autoheal.config import Config
from redis_autoheal.sshpool import SshPool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

_INITIAL = web.AppKey("initial_config", Config)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/probe", views.probe)
    app.router.add_get("/scrape", views.probe)  # redis_exporter's path, for its users' jobs
    app.router.add_get("/metrics", views.metrics)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_post("/-/reload", views.reload)


async def _connections(app: web.Application) -> AsyncIterator[None]:
    """One Redis connection per target and one SSH connection per host, kept and reused.

    Nothing connects here: each connection opens on its first probe, so a target that is
    down at start-up does not delay the others, and reopens after the target comes back.
    SIGHUP reloads the config, as POST /-/reload does. With `exporter.follow`, each unit's
    journal is followed from the start (exporter/follow.py).
    """
    ssh = SshPool()
    state = app[STATE] = ExporterState(app[_INITIAL], ssh)
    followers = app[FOLLOWERS] = Followers(ssh)
    await followers.sync(state.config)
    state.on_reload.append(followers.sync)
    reloads: set[asyncio.Task[str | None]] = set()

    def on_sighup() -> None:
        task = asyncio.ensure_future(state.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    yield
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGHUP)
    await asyncio.gather(*reloads, return_exceptions=True)
    await followers.close()
    await state.close()
    await ssh.close()


def create_app(config: Config) -> web.Application:
    """The exporter for the targets of `config`."""
    app = web.Application()
    app[_INITIAL] = config
    setup_routes(app)
    app.cleanup_ctx.append(_connections)
    return app
