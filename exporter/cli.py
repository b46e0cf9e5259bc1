"""The `redis-autoheal exporter` subcommand (also `python -m exporter`)."""

from __future__ import annotations

import argparse
import gc
import logging
import resource
from collections.abc import Callable

from redis_autoheal.config import load_config
from redis_autoheal.flags import Listen, add_listen

AddConfig = Callable[[argparse.ArgumentParser], None]
log = logging.getLogger("exporter")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_config: AddConfig
) -> None:
    """Add this service's subcommands; `add_config` adds the shared --config, --log-level."""
    p = sub.add_parser(
        "exporter",
        help="the Prometheus exporter: /probe?target=&module=, /metrics, /healthz",
        description="Serve the runbook's three health layers of each configured target to "
        "Prometheus: GET /probe?target=NAME&module=connectivity|systemd|performance|all.",
    )
    add_config(p)
    add_listen(p, "exporter.listen", "127.0.0.1:9121")
    p.set_defaults(func=run)


def raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one, as Go programs do at start-up.

    Each target keeps a Redis connection: a thousand targets outgrow the usual
    soft limit of 1024 while the hard limit is far higher.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-files limit from %d: %s", soft, e)


GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Fewer collections over a heap of thousands of targets and kept connections.

    With a target's config, prober and connection alive for the process's life, Python's
    default thresholds (700, 10, 10) make full collections frequent and long: pauses of
    hundreds of milliseconds at 10 000 targets, each a tail of scrape latency. What is loaded
    by now (modules, the config's targets) is frozen out of every collection; the young
    generation is collected every 50 000 allocations instead of 700, so the objects of a probe
    die before a collection could promote them, and the old ones are scanned rarely.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(args: argparse.Namespace) -> int:
    """Load the config and serve until SIGINT or SIGTERM."""
    from aiohttp import web  # noqa: PLC0415 -- `--help` and usage errors need neither

    from exporter.app import create_app  # noqa: PLC0415

    config = load_config(args.config)
    listen = Listen(args.listen, "exporter.listen", config.exporter.listen)
    raise_open_files_limit()
    app = create_app(config)
    listen.watch(app)
    tune_gc()

    def listening(_banner: str) -> None:  # aiohttp calls it once the port is bound
        listen.serving()
        log.info(
            "listening on %s:%d for %d target(s) of %s",
            listen.host,
            listen.port,
            len(config.targets),
            config.source,
        )

    with listen.bind_errors():
        web.run_app(
            app,
            host=listen.host,
            port=listen.port,
            access_log=None,  # one line per scrape would cost more than the scrape
            print=listening,
            shutdown_timeout=5.0,
        )
    return 0
