"""Ranked: an IntEnum whose value orders it (a Nagios exit code, an escalation step) and whose
lower-case name is what the JSON answers, the metrics' labels and the audit log carry."""

from __future__ import annotations

from enum import IntEnum


class Ranked(IntEnum):
    @property
    def label(self) -> str:
        return self.name.lower()
