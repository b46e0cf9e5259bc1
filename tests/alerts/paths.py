"""Where the files under test are."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
