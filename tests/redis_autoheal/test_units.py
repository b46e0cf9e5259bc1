"""redis_autoheal.units is the one list of unit states: the others are tied to it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from alerts.generator import scenarios
from redis_autoheal.units import RUNNING, STOPPED, TRANSITIONS, UNIT_STATES, UnitState
from testhost import _standin

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("redis_autoheal", "exporter", "remediator", "alerts", "chaos", "demo")


def test_the_states_the_contract_names_in_its_order() -> None:
    assert UNIT_STATES == (
        "active",
        "reloading",
        "inactive",
        "failed",
        "activating",
        "deactivating",
    )


def test_reloading_runs_and_is_a_transition() -> None:
    assert {UnitState.ACTIVE, UnitState.RELOADING} == RUNNING  # is-active exits 0 for both
    assert UnitState.RELOADING in TRANSITIONS
    assert not RUNNING & STOPPED
    assert not STOPPED & TRANSITIONS


def test_the_test_hosts_standin_agrees() -> None:
    # _standin.py runs on the test host's own python3, without this package: its copy is
    # checked here instead.
    assert set(_standin.ACTIVE_STATES) == RUNNING
    assert set(_standin.DEAD_STATES) == STOPPED
    assert set(_standin.GLYPHS) == set(UNIT_STATES)


def test_the_alert_scenarios_use_it() -> None:
    assert vars(scenarios)["UNIT_STATES"] is UNIT_STATES


def _literal_state_groups(path: Path) -> list[int]:
    """Lines of tuple, set or frozenset literals naming two or more unit states."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Tuple | ast.Set):
            words = {
                e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in UNIT_STATES
            }
            if len(words) >= 2:
                found.append(node.lineno)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_keeps_its_own_list(package: str) -> None:
    home = ROOT / "redis_autoheal" / "units.py"
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != home and (lines := _literal_state_groups(path))
    }
    assert found == {}
