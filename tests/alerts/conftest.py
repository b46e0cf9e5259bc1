"""Fixtures of the alerts/ tests: the tools, and the shipped files parsed."""

from __future__ import annotations

import pytest
import yaml

from redis_autoheal.thresholds import Thresholds, load
from tests.alerts.paths import ALERTS


@pytest.fixture(scope="session")
def rules() -> list[dict]:
    """Every rule of the shipped rules files, in file order."""
    out = []
    for path in sorted((ALERTS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend(group["rules"])
    return out


@pytest.fixture(scope="session")
def thresholds() -> Thresholds:
    return load(ALERTS / "thresholds.yml")


@pytest.fixture(scope="session")
def am_config() -> dict:
    return yaml.safe_load((ALERTS / "alertmanager.yml").read_text())


@pytest.fixture(scope="session")
def prom_config() -> dict:
    return yaml.safe_load((ALERTS / "prometheus.yml").read_text())
