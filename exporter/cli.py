"""The `redis-autoheal` subcommands of the exporter."""

from __future__ import annotations

import argparse
from collections.abc import Callable

AddConfig = Callable[[argparse.ArgumentParser], None]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_config: AddConfig
) -> None:
    """Add this service's subcommands; `add_config` adds the shared --config option."""
    del sub, add_config  # the exporter's subcommands are added here as they are built
