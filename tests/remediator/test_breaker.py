"""The circuit breaker: the 3rd recovery within the window opens it, it stays open across a
restart, only a reset closes it, and a state that cannot be read keeps it open."""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_autoheal.config import CircuitBreaker
from remediator.breaker import BreakerStore
from remediator.errors import BreakerStateError


class Clock:
    def __init__(self) -> None:
        self.now = 1_760_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def store(tmp_path: Path, clock: Clock, **kw: float) -> BreakerStore:
    s = BreakerStore(tmp_path / "state", CircuitBreaker(**kw), clock=clock)  # type: ignore[arg-type]
    s.check()
    return s


def test_the_third_recovery_within_the_window_opens_it(tmp_path: Path, clock: Clock) -> None:
    b = store(tmp_path, clock)
    assert not b.record_recovery("redis").open
    clock.now += 100
    assert not b.record_recovery("redis").open
    clock.now += 100
    state = b.record_recovery("redis")
    assert state.open
    assert state.reason == "3 recoveries within 300s"
    assert state.opened_at == clock.now
    assert b.is_open("redis")
    assert not b.is_open("cache")  # per target


def test_recoveries_further_apart_than_the_window_do_not(tmp_path: Path, clock: Clock) -> None:
    b = store(tmp_path, clock)
    for _ in range(10):
        assert not b.record_recovery("redis").open
        clock.now += 151  # two in any 300 s window, never three
    assert len(b.state("redis").recoveries) == 2


def test_it_stays_open_however_long_until_reset(tmp_path: Path, clock: Clock) -> None:
    b = store(tmp_path, clock, max_recoveries=1)
    b.record_recovery("redis")
    clock.now += 365 * 86400
    assert b.is_open("redis")
    before = b.reset("redis")
    assert before.open
    assert not b.is_open("redis")
    assert b.state("redis").recoveries == ()  # a reset forgets the history too


def test_the_state_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    store(tmp_path, clock, max_recoveries=2).record_recovery("redis")
    again = store(tmp_path, clock, max_recoveries=2)  # a new process
    assert again.record_recovery("redis").open
    assert store(tmp_path, clock, max_recoveries=2).is_open("redis")
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_a_reset_by_another_process_is_seen_at_once(tmp_path: Path, clock: Clock) -> None:
    daemon = store(tmp_path, clock, max_recoveries=1)
    daemon.record_recovery("redis")
    assert daemon.is_open("redis")
    store(tmp_path, clock, max_recoveries=1).reset("redis")  # the `breaker reset` command
    assert not daemon.is_open("redis")


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"version": 2, "targets": {}}', '{"version": 1, "targets": {"redis": 1}}'],
)
def test_a_corrupt_state_keeps_every_breaker_open(tmp_path: Path, clock: Clock, text: str) -> None:
    b = store(tmp_path, clock)
    b.path.write_text(text)
    assert b.is_open("redis")
    with pytest.raises(BreakerStateError):
        b.state("redis")
    with pytest.raises(BreakerStateError):
        b.check()  # and a remediator would not start on it
    with pytest.raises(BreakerStateError):
        b.record_recovery("redis")  # nor count on it: the file is left for a person to look at
    assert b.path.read_text() == text


def test_a_state_dir_that_cannot_be_made_stops_check(tmp_path: Path, clock: Clock) -> None:
    (tmp_path / "state").write_text("a file")
    with pytest.raises(BreakerStateError, match="cannot create"):
        store(tmp_path, clock)


def test_a_manual_stop_trips_it_and_only_a_reset_closes_it(tmp_path: Path, clock: Clock) -> None:
    b = store(tmp_path, clock)
    b.record_recovery("redis")
    before = b.trip("redis", "manual stop by user-123")
    assert not before.open
    state = b.state("redis")
    assert (state.open, state.opened_at, state.reason) == (
        True,
        clock.now,
        "manual stop by user-123",
    )
    assert len(state.recoveries) == 1  # kept: they still count in the window
    clock.now += 10
    b.trip("redis", "manual stop by someone else")  # already open: the first reason stays
    assert b.state("redis").reason == "manual stop by user-123"
    assert not b.is_open("cache")
    reopened = store(tmp_path, clock)  # survives a restart
    assert reopened.is_open("redis")
    reopened.reset("redis")
    assert not b.is_open("redis")
