"""The config in force and its targets, replaced whole by a reload (SIGHUP, POST /-/reload).

A reload reads the config file again (`config.source`); a file that does not load is refused
with the old config kept, `redis_autoheal_exporter_config_last_reload_successful` 0 and an
error in the log. A good one takes effect for the next request: targets that did not change
keep their prober and its connections, the others' probers close once the probes running on
them end, so a scrape in flight is never cut. `exporter.listen` is read at start-up only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from exporter import selfmetrics
from exporter.targets import TargetDirectory
from redis_autoheal.config import load_config
from redis_autoheal.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis_autoheal.config import Config
    from redis_autoheal.sshpool import SshPool

log = logging.getLogger("exporter")


class ExporterState:
    """Holds the current TargetDirectory; `reload()` swaps it for one of the file's config."""

    def __init__(self, config: Config, ssh: SshPool) -> None:
        self.ssh = ssh
        # Called with each config that takes effect (exporter/follow.py keeps in step).
        self.on_reload: list[Callable[[Config], Awaitable[None]]] = []
        self.directory = TargetDirectory(config, ssh)
        self._lock = asyncio.Lock()
        selfmetrics.TARGETS.set(len(config.targets))
        selfmetrics.RELOAD_SUCCESSFUL.set(1)
        selfmetrics.RELOAD_TIMESTAMP.set(time.time())

    @property
    def config(self) -> Config:
        return self.directory.config

    async def reload(self) -> str | None:
        """Load the config file again; None if it took effect, else why it was refused."""
        async with self._lock:
            source = self.config.source
            try:
                config = await asyncio.to_thread(load_config, source)
            except ConfigError as e:
                selfmetrics.RELOAD_SUCCESSFUL.set(0)
                log.error("config reload refused, the old config stays in force: %s", e)  # noqa: TRY400 -- the message is the whole story
                return str(e)
            if config.exporter.listen != self.config.exporter.listen:
                log.warning(
                    "exporter.listen changed to %s: restart the exporter to listen there",
                    config.exporter.listen,
                )
            old, self.directory = self.directory, TargetDirectory(config, self.ssh, self.directory)
            await old.retire(self.directory)
            for call in self.on_reload:
                await call(config)
            selfmetrics.TARGETS.set(len(config.targets))
            selfmetrics.RELOAD_SUCCESSFUL.set(1)
            selfmetrics.RELOAD_TIMESTAMP.set(time.time())
            log.info("config reloaded from %s: %d target(s)", source, len(config.targets))
            return None

    async def close(self) -> None:
        await self.directory.retire()
