"""Generates alerts/rules/ and alerts/tests/ from alerts/thresholds.yml (see alerts/README.md)."""
