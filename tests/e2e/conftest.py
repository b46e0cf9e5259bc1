"""Fixtures of the end-to-end tests: whole stacks (demo/stack.py), each with its own state.

Each test gets fresh stacks: a new test host, new temporary directory, new breaker state (so
the runbook's circuit breaker, 3 recoveries in 5 minutes, starts closed in every test), new
Prometheus and Alertmanager storage. Needs root and Debian's prometheus, alertmanager and
redis-server packages; skips without them, fails instead under CI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from demo.stack import Stack, StackOptions
from tests.e2e.require import require_stack


@pytest.fixture
def make_stack() -> Iterator[Callable[..., Stack]]:
    """Start stacks on demand (StackOptions fields as keywords); all stopped afterwards."""
    require_stack()
    stacks: list[Stack] = []

    def make(**options: Any) -> Stack:
        stack = Stack(StackOptions(**options))
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in reversed(stacks):
        stack.close()


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    """A live stack at the fast cadence with the runbook's limits."""
    return make_stack()
