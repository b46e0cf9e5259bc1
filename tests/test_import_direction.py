"""Dependencies run one way: both services import the shared core, never each other, and the
core imports neither. Every import counts, those under TYPE_CHECKING too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "redis_autoheal": {"exporter", "remediator"},
    "remediator": {"exporter"},
    "exporter": {"remediator"},
}
# The console script assembles every service's subcommands, so it sits above them all; while it
# lives in the shared package it is the one exception (tested below, so it goes when it moves).
ENTRY_POINT = "redis_autoheal/cli.py"


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
    wrong.pop(ENTRY_POINT, None)
    assert wrong == {}


def test_the_entry_point_is_still_an_exception() -> None:
    entry = ROOT / ENTRY_POINT
    if entry.exists():  # once it moves out of redis_autoheal/, drop ENTRY_POINT
        assert imported_packages(entry) & FORBIDDEN["redis_autoheal"]
