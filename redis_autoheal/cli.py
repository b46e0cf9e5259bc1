"""The `redis-autoheal` command: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import NoReturn, cast

from redis_autoheal import __version__
from redis_autoheal.config import Config, load_config, read_remediator_secrets
from redis_autoheal.errors import AutohealError
from redis_autoheal.logs import LEVELS, setup_logging

DEFAULT_CONFIG = Path("/etc/redis-autoheal/config.yml")
# Each service adds its subcommands through this entry-point group (pyproject.toml), so that the
# shared core names neither service; listed in this order, any others after them by name.
COMMANDS_GROUP = "redis_autoheal.commands"
ORDER = ("exporter", "remediator", "init")


class CliParser(argparse.ArgumentParser):
    """argparse with each usage error on one line, exiting with the subcommand's
    `error_status` default if it sets one (`health`: 3, Nagios's UNKNOWN), else 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(_status(self.get_default("error_status"), 2), f"{self.prog}: error: {message}\n")


def _status(wanted: object, usual: int) -> int:
    return wanted if isinstance(wanted, int) else usual


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the YAML config file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--log-level", choices=LEVELS, default="info", help="log level on stderr (default: info)"
    )


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.service in ("remediator", "all"):
        read_remediator_secrets(config)
    names = ", ".join(t.name for t in config.targets)
    print(f"{config.source}: OK: {len(config.targets)} target(s): {names}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand, or, when `command` is the name of a service's
    entry point (exporter, remediator, init), of that service's subcommands alone."""
    parser = CliParser(
        prog="redis-autoheal",
        description="Watch a systemd-managed Redis and heal it; page a person only when "
        "healing cannot work.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Typed as plain argparse for the services' register(): its parsers are CliParsers.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",  # noqa: SLF001 -- argparse's own type
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )

    p = sub.add_parser("check-config", help="validate the config file: exit 0, or 1 and why")
    _add_config(p)
    p.add_argument(
        "--service",
        choices=("exporter", "remediator", "all"),
        default="all",
        help="also read the files only this service needs (default: all)",
    )
    p.set_defaults(func=_check_config)

    # Loaded here, not at module level, so that `check-config` works even if a service's
    # dependencies are broken. A service's own process loads no other service's modules: an
    # exporter never imports the remediator, nor asyncssh through `init`.
    providers = sorted(
        entry_points(group=COMMANDS_GROUP),
        key=lambda ep: (ORDER.index(ep.name) if ep.name in ORDER else len(ORDER), ep.name),
    )
    if not providers:
        parser.exit(
            1,
            f"{parser.prog}: error: not installed: no {COMMANDS_GROUP} entry points "
            "(run scripts/setup.sh, or pip install the package)\n",
        )
    for provider in [p for p in providers if p.name == command] or providers:
        provider.load()(sub, _add_config)
    return parser


def load(args: argparse.Namespace) -> Config:
    """The config named on the command line (for subcommands that need one)."""
    return load_config(args.config)


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand named in `argv`; return the process exit code."""
    try:
        return _run(argv)
    except BrokenPipeError:
        return _stdout_closed()


def _run(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    # The subcommand is the first word that is not an option: the top level's take no value.
    parser = build_parser(next((w for w in words if not w.startswith("-")), None))
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit:  # --help, --version or a usage error: flushed here, where a closed
        sys.stdout.flush()  # pipe can be caught, not in the interpreter's last flush
        raise
    if unknown:  # the subcommand's parser leaves these to this one: its status still counts
        status = _status(getattr(args, "error_status", None), 2)
        parser.exit(status, f"{parser.prog}: error: unrecognized arguments: {' '.join(unknown)}\n")
    setup_logging(getattr(args, "log_level", "info"))
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except AutohealError as e:
        print(f"redis-autoheal: error: {e}", file=sys.stderr)
        return _status(getattr(args, "error_status", None), 1)
    except KeyboardInterrupt:
        return 130
    return code


def _stdout_closed() -> int:
    """The reader of stdout has gone (`... | head`): stop quietly, as a tool that SIGPIPE
    ended, with its status (128 + 13)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere, quietly
    os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
