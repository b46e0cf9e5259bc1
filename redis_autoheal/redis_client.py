"""INFO's text as fields: the one piece of Redis's replies both services read the same way.

The connections themselves are redis_autoheal/resp.py's (one RESP2 connection per target,
kept by redis_autoheal/links.py); they never retry, so a failure is reported at once.
"""

from __future__ import annotations


def parse_info(text: str) -> dict[str, str]:
    """Split INFO's `field:value` lines, skipping `# Section` headers and blank lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and line[0] != "#":
            name, _, value = line.partition(":")
            fields[name] = value
    return fields
