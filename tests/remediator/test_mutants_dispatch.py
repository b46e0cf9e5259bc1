"""What mutation testing found untested in remediator/dispatch.py (scripts/mutation.sh): the
re-check of a recovery the last run left unfinished (`resume`) starts only on a free, known
target of a running remediator, under the recovery's own id, an alert meanwhile joins it, and
what it did is audited; shutdown during a recovery ends it interrupted and returns.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from redis_autoheal.config import Config
from remediator.alertmanager import Notification, parse_notification
from remediator.app import create_app
from remediator.audit import read_events
from remediator.dispatch import Admission, Dispatcher
from remediator.keys import DISPATCHER
from tests.remediator.configs import unreachable_config
from tests.remediator.hostapp import post
from tests.remediator.notifications import alert, notification
from tests.remediator.test_webhook import unreachable
from tests.support import HANG

__all__ = ["unreachable"]  # the fixture, shared with test_webhook.py


async def test_resume_starts_a_recheck_only_on_a_free_known_target(
    aiohttp_client: Any, config: Config
) -> None:
    client = await aiohttp_client(create_app(config))
    dispatcher = client.app[DISPATCHER]
    assert dispatcher.resume("nosuch", "r-unknown") is False
    assert dispatcher.resume("redis", "r-left") is True
    job = dispatcher.running("redis")
    assert job is not None
    assert job.trigger.recovery_id == "r-left"
    assert dispatcher.resume("redis", "r-again") is False  # taken: one recovery per target
    await dispatcher.wait_idle()
    assert [r.recovery_id for r in dispatcher.history("redis")] == ["r-left"]
    ends = [
        (e["recovery_id"], e["outcome"])
        for e in read_events(config.audit)
        if e.get("phase") == "finished"
    ]
    assert ends == [("r-left", "refused")]  # no ssh section: nothing could run
    await dispatcher.close()
    assert dispatcher.resume("cache", "r-late") is False  # shut down: nothing starts
    assert dispatcher.running("cache") is None


@pytest.fixture
async def dispatcher(aiohttp_client: Any, unreachable: Config) -> Dispatcher:
    """The dispatcher of a remediator whose targets cannot be reached."""
    client = await aiohttp_client(create_app(unreachable))
    return client.app[DISPATCHER]


async def idle(dispatcher: Dispatcher) -> None:
    async with asyncio.timeout(HANG):
        await dispatcher.wait_idle()


def note(*alerts: dict[str, Any]) -> Notification:
    return parse_notification(notification(*alerts))


def dispositions(admission: Admission) -> list[str]:
    return [d.value for _, d in admission.decisions]


async def test_an_alert_during_a_resumed_recheck_joins_it_and_the_target_is_freed_after(
    dispatcher: Dispatcher,
) -> None:
    assert dispatcher.resume("redis", "r-left")
    joining = dispatcher.admit(note(alert("redis", fingerprint="join1")), "127.0.0.1")
    assert dispositions(joining) == ["joined_running_recovery"]
    dispatcher.commit(joining)
    await idle(dispatcher)
    assert [r.recovery_id for r in dispatcher.history("redis")] == ["r-left"]
    after = dispatcher.admit(note(alert("redis", fingerprint="next1")), "127.0.0.1")
    assert dispositions(after) == ["recovery_started"]  # r-left ended: the target is free
    dispatcher.release(after)


async def long_recovery(aiohttp_client: Any, tmp_path: Path) -> tuple[Config, Dispatcher]:
    """A remediator whose recovery r-long of `redis` (re-checked after a restart) waits 60 s
    between its attempts."""
    config = unreachable_config(tmp_path, retry_delay_seconds=60)
    client = await aiohttp_client(create_app(config))
    dispatcher = client.app[DISPATCHER]
    assert dispatcher.resume("redis", "r-long")
    return config, dispatcher


async def test_shutdown_during_a_recovery_ends_it_interrupted_and_returns(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config, dispatcher = await long_recovery(aiohttp_client, tmp_path)
    async with asyncio.timeout(HANG):
        while not any(e.get("phase") == "verified" for e in read_events(config.audit)):  # noqa: ASYNC110 -- the audit file is the event
            await asyncio.sleep(0.02)
    await dispatcher.close()  # during the 60 s before attempt 2
    assert dispatcher.running("redis") is None
    (end,) = [
        e
        for e in read_events(config.audit)
        if e["event_type"] == "auto_recovery" and e.get("phase") == "finished"
    ]
    assert (end["recovery_id"], end["outcome"]) == ("r-long", "interrupted")


async def test_a_recovery_an_alert_started_is_audited_with_its_caller_and_a_fresh_id(
    aiohttp_client: Any, unreachable: Config
) -> None:
    client = await aiohttp_client(create_app(unreachable))
    assert await post(client, alert("redis", fingerprint="a1")) == ["recovery_started"]
    async with asyncio.timeout(HANG):
        await client.app[DISPATCHER].wait_idle()
    recovery = [e for e in read_events(unreachable.audit) if e["event_type"] == "auto_recovery"]
    assert {e["phase"] for e in recovery} >= {"started", "finished"}
    for e in recovery:
        assert e["source_ip"] == "127.0.0.1", e  # who sent the notification
        assert re.fullmatch("[0-9a-f]{12}", e["recovery_id"]), e


async def test_a_firing_copy_after_a_resolved_alert_starts_a_recovery_that_looks_first(
    aiohttp_client: Any, unreachable: Config
) -> None:
    """A peer's late delivery, or a new failure Alertmanager merged into the alert: the same
    key again, which only a look at the target tells apart."""
    client = await aiohttp_client(create_app(unreachable))
    assert await post(client, alert("redis", status="resolved", fingerprint="b1")) == ["resolved"]
    assert await post(client, alert("redis", fingerprint="b1")) == ["recovery_started"]
    async with asyncio.timeout(HANG):
        await client.app[DISPATCHER].wait_idle()


async def test_an_alert_given_back_is_not_among_the_alerts_its_recovery_served(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config, dispatcher = await long_recovery(aiohttp_client, tmp_path)
    kept = dispatcher.admit(note(alert("redis", fingerprint="kept1")), "127.0.0.1")
    dispatcher.commit(kept)
    given_back = dispatcher.admit(note(alert("redis", fingerprint="back1")), "127.0.0.1")
    assert dispositions(given_back) == ["joined_running_recovery"]
    dispatcher.release(given_back)  # its audit write failed
    async with asyncio.timeout(HANG):
        while not any(e.get("phase") == "verified" for e in read_events(config.audit)):  # noqa: ASYNC110 -- the audit file is the event
            await asyncio.sleep(0.02)
    await dispatcher.close()
    (end,) = [
        e
        for e in read_events(config.audit)
        if e["event_type"] == "auto_recovery" and e.get("phase") == "finished"
    ]
    assert end["alert_fingerprints"] == ["kept1"]


def while_cache_recovers(dispatcher: Dispatcher, *targets: str) -> Admission:
    """One notification with an alert of each target, in this order, admitted while `cache`
    is recovering (the re-check of a recovery cut by a restart, r-c)."""
    assert dispatcher.resume("cache", "r-c")
    alerts = [alert(t, fingerprint=f"{t[0]}1") for t in targets]
    return dispatcher.admit(note(*alerts), "127.0.0.1")


async def test_a_notification_given_back_frees_every_target_even_one_whose_recovery_ended(
    dispatcher: Dispatcher,
) -> None:
    both = while_cache_recovers(dispatcher, "redis", "cache")
    assert dispositions(both) == ["recovery_started", "joined_running_recovery"]
    await idle(dispatcher)  # r-c ends before the notification's write fails
    dispatcher.release(both)
    again = dispatcher.admit(note(alert("redis", fingerprint="r2")), "127.0.0.1")
    assert dispositions(again) == ["recovery_started"]  # nothing holds redis
    dispatcher.release(again)


async def test_a_join_given_back_before_its_recovery_started_leaves_it_to_start(
    dispatcher: Dispatcher,
) -> None:
    first = dispatcher.admit(note(alert("redis", fingerprint="s1")), "127.0.0.1")
    second = dispatcher.admit(note(alert("redis", fingerprint="j1")), "127.0.0.1")
    assert dispositions(second) == ["joined_running_recovery"]
    dispatcher.release(second)  # the second write failed first
    dispatcher.commit(first)  # the first is on disk: its recovery starts
    await idle(dispatcher)
    (report,) = dispatcher.history("redis")
    assert report.recovery_id == first.claims[0][1].recovery_id


async def test_a_late_write_for_an_ended_recovery_starts_nothing_of_the_next(
    dispatcher: Dispatcher,
) -> None:
    assert dispatcher.resume("redis", "r1")
    late = dispatcher.admit(note(alert("redis", fingerprint="l1")), "127.0.0.1")  # joins r1
    await idle(dispatcher)  # r1 ends before that write is done
    following = dispatcher.admit(note(alert("redis", fingerprint="n1")), "127.0.0.1")
    assert dispositions(following) == ["recovery_started"]
    dispatcher.commit(late)  # the late write lands: not the following recovery's
    dispatcher.release(following)  # whose own write failed: it never runs
    await idle(dispatcher)
    assert [r.recovery_id for r in dispatcher.history("redis")] == ["r1"]


async def test_a_notification_written_starts_every_recovery_even_after_one_that_ended(
    dispatcher: Dispatcher,
) -> None:
    both = while_cache_recovers(dispatcher, "cache", "redis")
    assert dispositions(both) == ["joined_running_recovery", "recovery_started"]
    await idle(dispatcher)  # r-c ends before the notification is on disk
    dispatcher.commit(both)
    await idle(dispatcher)
    assert len(dispatcher.history("redis")) == 1  # redis's recovery ran all the same


async def test_with_auto_recovery_off_an_alert_is_ignored_as_such(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = unreachable_config(tmp_path, enabled=False)
    client = await aiohttp_client(create_app(config))
    assert await post(client, alert("redis")) == ["ignored_auto_recovery_disabled"]


async def test_a_notification_written_after_shutdown_starts_nothing_and_says_so(
    aiohttp_client: Any, unreachable: Config, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(create_app(unreachable))
    dispatcher = client.app[DISPATCHER]
    late = dispatcher.admit(note(alert("redis", fingerprint="z1")), "127.0.0.1")
    ((_, claim),) = late.claims
    await dispatcher.close()
    with caplog.at_level(logging.ERROR, logger="remediator.dispatch"):
        dispatcher.commit(late)  # its write outlived the shutdown's grace
    assert dispatcher.running("redis") is None
    assert dispatcher.history("redis") == []
    assert [r.getMessage() for r in caplog.records] == [
        f"redis: recovery {claim.recovery_id} admitted after shutdown: not started"
    ]
