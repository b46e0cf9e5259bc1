"""Dependencies run one way: both services import the shared core, never each other, and the
core imports neither. Every import counts, those under TYPE_CHECKING too."""

from __future__ import annotations

import argparse
import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from redis_autoheal.cli import COMMANDS_GROUP, build_parser

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "redis_autoheal": {"exporter", "remediator"},
    "remediator": {"exporter"},
    "exporter": {"remediator"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in a file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_imported_packages_sees_every_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import exporter.probe\nfrom remediator import app\n"
        "if TYPE_CHECKING:\n    from redis_autoheal.probe import Prober\n"
    )
    assert imported_packages(source) == {"exporter", "remediator", "redis_autoheal"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_it_may(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in files
        if (found := imported_packages(path) & FORBIDDEN[package])
    }
    assert wrong == {}


def test_the_console_script_finds_each_services_commands_by_entry_point() -> None:
    """The core's CLI names no service: each adds its subcommands through pyproject's
    entry-point group, which the installed package carries."""
    found = {ep.name: ep.value for ep in entry_points(group=COMMANDS_GROUP)}
    assert found == {
        "exporter": "exporter.cli:register",
        "remediator": "remediator.cli:register",
        "init": "redis_autoheal.init.cli:register",
    }
    (subcommands,) = (
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    commands = subcommands.choices
    assert {"check-config", "exporter", "remediator", "health", "audit", "breaker", "init"} <= set(
        commands
    )
