"""Command-line options that more than one subcommand takes."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import TYPE_CHECKING

from redis_autoheal.config import parse_listen
from redis_autoheal.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aiohttp import web


def _listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_listen(parser: argparse.ArgumentParser, setting: str, default: str) -> None:
    """`--listen HOST:PORT`, which overrides the config's `setting`; `args.listen` is then
    (host, port), or None without the flag."""
    parser.add_argument(
        "--listen",
        type=_listen,
        metavar="HOST:PORT",
        help=f"where to listen, overriding {setting} of the config (default {default})",
    )


class Listen:
    """Where a service listens: `--listen` if given, else the config's `setting`; and a port
    that cannot be bound blamed on whichever of the two said it, in one line.

    `watch(app)` marks when the app's parts are open (binding comes next), `serving()` when
    the port is bound; an OSError out of `bind_errors()` in between is the bind's.
    """

    def __init__(self, flag: tuple[str, int] | None, setting: str, configured: str) -> None:
        self.host, self.port = flag or parse_listen(configured)  # the config's is checked
        self.where = "--listen" if flag else setting
        self.phase = "starting"  # then "binding" once the app's parts are open, then "serving"

    def watch(self, app: web.Application) -> None:
        app.on_startup.append(self._binding)  # runs after cleanup_ctx has opened the parts

    async def _binding(self, _app: web.Application) -> None:
        self.phase = "binding"

    def serving(self) -> None:
        self.phase = "serving"

    @contextlib.contextmanager
    def bind_errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            if self.phase != "binding":
                raise
            reason = os.strerror(e.errno) if e.errno else str(e)
            problem = f"cannot listen on {self.host}:{self.port}: {reason}"
            raise ConfigError(self.where, problem) from None
