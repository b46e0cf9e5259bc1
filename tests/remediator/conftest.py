"""Fixtures of the remediator's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_autoheal.config import Config
from tests.remediator.configs import write_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Two targets without SSH (nothing can run on them) and short timings."""
    return write_config(
        tmp_path,
        {
            "targets": [{"name": "redis"}, {"name": "cache"}],
            "auto_recovery": {"retry_delay_seconds": 0.01, "stable_seconds": 0},
        },
    )
