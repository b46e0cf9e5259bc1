"""What mutation testing found untested in remediator/dispatch.py (scripts/mutation.sh): the
re-check of a recovery the last run left unfinished (`resume`) starts only on a free, known
target of a running remediator, under the recovery's own id, and what it did is audited.
"""

from __future__ import annotations

from typing import Any

from redis_autoheal.config import Config
from remediator.app import create_app
from remediator.audit import read_events
from remediator.keys import DISPATCHER


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
