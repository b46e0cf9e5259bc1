"""LocalCoordination, the one-process store behind the replicas' seam: what `admit` decides
about an alert, that a reservation given back leaves nothing behind, and how long a handled
alert stays a duplicate (a clock handed in, no waiting)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from redis_autoheal.config import Audit, CircuitBreaker
from remediator.alertmanager import AlertKey
from remediator.audit import AuditWriter
from remediator.breaker import BreakerStore
from remediator.coordination import (
    SEEN_MAX,
    SEEN_TTL_SECONDS,
    Claim,
    Coordination,
    LocalCoordination,
    Verdict,
)
from remediator.errors import BreakerStateError

STARTS = datetime(2025, 10, 10, 14, 30, tzinfo=UTC)


def key(fingerprint: str) -> AlertKey:
    return (fingerprint, STARTS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def local(tmp_path: Path, clock: Clock) -> LocalCoordination:
    breaker = BreakerStore(tmp_path / "state", CircuitBreaker())
    breaker.check()
    audit = AuditWriter(Audit(path=tmp_path / "audit.log"))
    return LocalCoordination(["redis", "cache"], audit, breaker, clock=clock)


def admit(c: Coordination, fingerprint: str, *, target: str = "redis", new: str = "r1") -> Claim:
    return c.admit(target, key(fingerprint), recovery_id=new, may_act=True)


def test_the_first_alert_starts_the_next_joins_and_a_repeat_is_a_duplicate(
    local: LocalCoordination,
) -> None:
    first = admit(local, "a", new="r1")
    assert (first.verdict, first.recovery_id, first.reserved) == (Verdict.STARTED, "r1", True)
    joined = admit(local, "b", new="r2")  # r2 would be a new recovery's id: the target is held
    assert (joined.verdict, joined.recovery_id) == (Verdict.JOINED, "r1")
    repeat = admit(local, "a", new="r3")  # before the first is even committed
    assert (repeat.verdict, repeat.recovery_id, repeat.reserved) == (Verdict.DUPLICATE, None, False)
    other = admit(local, "a2", target="cache", new="r4")  # targets are independent
    assert (other.verdict, other.recovery_id) == (Verdict.STARTED, "r4")


def test_an_alert_the_caller_may_not_act_on_is_declined_and_nothing_is_reserved(
    local: LocalCoordination,
) -> None:
    declined = local.admit("redis", key("a"), recovery_id="r1", may_act=False)
    assert (declined.verdict, declined.reserved) == (Verdict.DECLINED, False)
    assert local.admit("redis", key("a"), recovery_id="r2", may_act=False).verdict == "declined"
    assert admit(local, "a", new="r3").verdict == Verdict.STARTED  # not remembered, not held
    # Once handled, a repeat is a duplicate whether or not the caller may act.
    assert local.admit("redis", key("a"), recovery_id="r4", may_act=False).verdict == "duplicate"


def test_an_open_breaker_suppresses_a_new_recovery_but_not_a_join(
    local: LocalCoordination,
) -> None:
    assert admit(local, "a", new="r1").verdict == Verdict.STARTED
    local.breaker.trip("redis", "a person stopped it")
    assert admit(local, "b").verdict == Verdict.JOINED  # the recovery holding it serves it
    local.end("redis", "r1", [])
    suppressed = admit(local, "c", new="r2")
    assert (suppressed.verdict, suppressed.reserved) == (Verdict.SUPPRESSED, False)
    assert local.claim("redis", "r3")  # suppression held nothing
    local.end("redis", "r3", [])
    local.breaker.reset("redis")
    assert admit(local, "c", new="r4").verdict == Verdict.STARTED  # nor remembered the alert


def test_a_release_leaves_nothing_reserved(local: LocalCoordination) -> None:
    """The audit write behind an admission failed: the target is free and the alerts are not
    duplicates, so Alertmanager's retry starts a recovery."""
    started, joined = admit(local, "a", new="r1"), admit(local, "b")
    local.release(joined)
    local.release(started)
    assert local.claim("redis", "r2")  # free
    local.end("redis", "r2", [])
    assert admit(local, "a", new="r3").verdict == Verdict.STARTED
    assert admit(local, "b").verdict == Verdict.JOINED
    local.release(local.admit("redis", key("z"), recovery_id="r9", may_act=False))  # no-op


def test_a_start_given_back_while_a_join_stands_keeps_the_target_held(
    local: LocalCoordination,
) -> None:
    started, joined = admit(local, "a", new="r1"), admit(local, "b")
    local.release(started)
    assert not local.claim("redis", "r2")  # the join still stands on r1
    local.commit(joined)
    assert admit(local, "a").verdict == Verdict.JOINED  # given back: not a duplicate
    assert admit(local, "b").verdict == Verdict.DUPLICATE


def test_a_join_given_back_leaves_a_committed_recovery_holding_its_target(
    local: LocalCoordination,
) -> None:
    local.commit(admit(local, "a", new="r1"))
    joined = admit(local, "b")
    local.release(joined)
    assert not local.claim("redis", "r2")  # r1 runs
    assert admit(local, "b").verdict == Verdict.JOINED


def test_a_claim_of_an_ended_recovery_changes_nothing_of_the_next(
    local: LocalCoordination,
) -> None:
    """An admission that joined r1 settles after r1 ended and r2 took the target."""
    local.commit(admit(local, "a", new="r1"))
    late = admit(local, "b")
    local.end("redis", "r1", [key("b")])  # r1 did not serve b
    local.commit(admit(local, "c", new="r2"))
    local.release(late)
    local.commit(late)  # whichever way it settles, r2 is untouched
    assert admit(local, "c").verdict == Verdict.DUPLICATE
    assert not local.claim("redis", "r3")


def test_end_frees_the_target_and_forgets_only_what_was_not_served(
    local: LocalCoordination,
) -> None:
    for claim in (admit(local, "a", new="r1"), admit(local, "b")):
        local.commit(claim)
    local.end("redis", "r2", [])  # not the holder: nothing is freed
    assert not local.claim("redis", "r3")
    assert admit(local, "a").verdict == Verdict.DUPLICATE
    local.end("redis", "r1", [key("b")])
    assert admit(local, "b", new="r4").verdict == Verdict.STARTED
    assert admit(local, "a").verdict == Verdict.DUPLICATE  # served: its repeat changes nothing


def test_a_claim_without_an_alert_holds_a_free_target(local: LocalCoordination) -> None:
    assert local.claim("redis", "r-left")
    assert not local.claim("redis", "r-again")
    joined = admit(local, "a", new="r1")
    assert (joined.verdict, joined.recovery_id) == (Verdict.JOINED, "r-left")
    local.release(joined)
    assert not local.claim("redis", "r2")  # it was held before the join: it still is


def test_a_handled_alert_is_a_duplicate_for_a_day(local: LocalCoordination, clock: Clock) -> None:
    local.remember(key("a"))  # it resolved
    assert admit(local, "a").verdict == Verdict.DUPLICATE
    clock.now += SEEN_TTL_SECONDS - 1
    assert admit(local, "a").verdict == Verdict.DUPLICATE
    clock.now += 1
    assert admit(local, "a").verdict == Verdict.STARTED
    clock.now += SEEN_TTL_SECONDS  # a hold is not a memory: it lasts until the recovery ends
    assert admit(local, "a").verdict == Verdict.DUPLICATE


def test_past_its_size_the_memory_forgets_the_oldest_first(local: LocalCoordination) -> None:
    for n in range(SEEN_MAX + 1):
        local.remember(key(f"k{n}"))
    assert admit(local, "k1").verdict == Verdict.DUPLICATE
    assert admit(local, f"k{SEEN_MAX}").verdict == Verdict.DUPLICATE
    assert admit(local, "k0").verdict == Verdict.STARTED


def test_each_target_has_one_lock_and_one_start_budget(local: LocalCoordination) -> None:
    assert local.lock("redis") is local.lock("redis")
    assert local.lock("redis") is not local.lock("cache")
    assert local.start_budget("redis") is local.start_budget("redis")
    assert local.start_budget("redis") is not local.start_budget("cache")


def open_files() -> set[str]:
    fds = Path("/proc/self/fd")
    return {str(p.readlink()) for p in fds.iterdir() if p.is_symlink()}


async def test_a_breaker_state_it_cannot_read_stops_open_and_leaves_no_file_open(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "circuit_breakers.json").write_text("{not json")
    audit = AuditWriter(Audit(path=tmp_path / "audit.log"))
    local = LocalCoordination(["redis"], audit, BreakerStore(state, CircuitBreaker()))
    with pytest.raises(BreakerStateError, match="not JSON"):
        await local.open()
    assert (tmp_path / "audit.log").exists()  # it was opened first, then closed again
    assert str(tmp_path / "audit.log") not in open_files()
