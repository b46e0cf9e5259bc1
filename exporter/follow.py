"""Follows each target's unit over SSH and pushes its state alerts the moment it changes.

Per target with an `ssh` section (when `exporter.follow` is set), one task keeps
`sudo -n journalctl -u UNIT -f -n 1 -o json` running on the probe lane of the host's SSH
connection (redis_autoheal/ssh.py). systemd writes a line about the unit at every transition
("Stopped ...", "Main process exited ...", "Failed with result ..."); each such line wakes a
read of `systemctl is-active UNIT`, and the state read decides. Reads are coalesced: lines that
arrive during one read cause one more read after it, so the last read always follows the last
line. A read also runs when the stream (re)opens, after its first line (the newest entry,
proving the journal is followed), and every `resend_seconds`, so a transition made while the
stream was down is found on reconnect. A lost stream is reopened with backoff (1 s doubling to
`reconnect_max_seconds`, with jitter).

A unit found `inactive` or `failed` fires the rules file's alert for that state
(redis_autoheal/rulefile.py), pushed to Alertmanager at once (exporter/push.py) and again every
`resend_seconds` while it holds and the stream is up; a state without an alert resolves it (the
resolution is sent until an Alertmanager takes it). A push no Alertmanager took is retried every
5 s.
The Prometheus rule fires the very same alert (same labels) at its own pace: a safety net for
a failed push, an Alertmanager that was down, or a stream that could not be opened.

`followed` (the probe's `redis_systemd_unit_followed`) tells the rule when to stand down: the
stream is up, a state read has been applied since it opened, and the last push was taken. With
nothing to push, "taken" is what an Alertmanager said last (exporter/push.py `ready`), asked
after the stream's first read and every `resend_seconds`: a follower that has never pushed
claims nothing it has not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter import selfmetrics
from exporter.push import Alert, AlertPusher, alert
from redis_autoheal.commands import IsActive, JournalFollow
from redis_autoheal.errors import SshError
from redis_autoheal.logs import target_logger

if TYPE_CHECKING:
    from redis_autoheal.config import Config, Target, UnitFollow
    from redis_autoheal.rulefile import StateAlert
    from redis_autoheal.ssh import SshHost
    from redis_autoheal.sshpool import SshPool

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
# A resolution is sent until an Alertmanager took it, for at most this long. Not again after:
# each send would put the alert back in its Alertmanager group, which then lives on, and a
# new alert of the same name waits for that group's next group_interval instead of its
# group_wait.
RESOLVED_KEPT_SECONDS = 15 * 60.0
VALID_FOR_RESENDS = 4  # a firing alert's endsAt: 4 resends ahead, as Prometheus sets it
PUSH_RETRY_SECONDS = 5.0  # a push no Alertmanager took is tried again this soon
# Streams opening at once. A thousand handshakes started together (the exporter's start, its
# network back after a cut) overload the process: most then miss connect_timeout_seconds and
# back off, and the last stream is up minutes later. In turns, each is up within seconds.
OPENING_AT_ONCE = 32


def about_the_unit(line: str) -> bool:
    """A journal entry from systemd about the unit, not the service's own output.

    A line that is not the JSON expected counts as one: a read too many costs little.
    """
    try:
        fields = json.loads(line)
    except ValueError:
        return True
    if not isinstance(fields, dict):
        return True
    return "UNIT" in fields or fields.get("_PID") == "1"


@dataclass
class _Firing:
    alert: StateAlert
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None = None  # set when resolved


class UnitFollower:
    """Follows one target's unit; see the module docstring."""

    def __init__(
        self,
        target: Target,
        ssh: SshHost,
        settings: UnitFollow,
        pusher: AlertPusher,
        opening: asyncio.Semaphore | None = None,
    ) -> None:
        self.target = target
        self.ssh = ssh
        # Shared by every follower: how many streams may be opening (SSH handshakes) at once.
        self.opening = opening or asyncio.Semaphore(OPENING_AT_ONCE)
        self.settings = settings
        self.pusher = pusher
        self.state: str | None = None  # the last state read
        self.up = False  # the stream is open
        self.reconciled = False  # a state read was applied since the stream opened
        self.delivered = False  # the last push was taken (with none pending: would be)
        self._opened = 0  # streams opened so far: tells a read that began before this one
        self._pushes = 0  # pushes made so far: a readiness answer older than a push is void
        self._wake = asyncio.Event()
        self._firing: _Firing | None = None
        self._resolved: list[_Firing] = []
        self._push_failed = False
        self._failed = asyncio.Event()  # set by a push no Alertmanager took
        self._checked = asyncio.Event()  # set by a reconcile: is a push taken now?
        self.log = target_logger(logger, target.name)

    @property
    def followed(self) -> bool:
        """The unit's state alerts come from here now: the rule may stand down."""
        return self.up and self.reconciled and self.delivered

    async def run(self) -> None:
        """Follow until cancelled."""
        tasks = [
            asyncio.ensure_future(self._follow()),
            asyncio.ensure_future(self._read_when_woken()),
            asyncio.ensure_future(self._resend()),
            asyncio.ensure_future(self._retry()),
            asyncio.ensure_future(self._check_when_reconciled()),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.up:
                selfmetrics.FOLLOWED_UNITS.dec()

    async def _follow(self) -> None:
        delay = FIRST_RETRY_SECONDS
        command = JournalFollow(self.target.systemd_unit)
        while True:
            try:
                async with contextlib.AsyncExitStack() as stream:
                    async with self.opening:
                        lines = await stream.enter_async_context(self.ssh.follow(command))
                    self._opened += 1
                    self._set_up(up=True)
                    self._wake.set()  # reconcile: whatever happened while we did not follow
                    async for line in lines:
                        delay = FIRST_RETRY_SECONDS  # the journal is followed: a good stream
                        if about_the_unit(line):
                            self._wake.set()
                why = "the stream ended"
            except SshError as e:
                why = str(e)
            finally:
                self._set_up(up=False)
            pause = delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
            self.log.warning("following %s: %s; again in %.1fs", self.target.unit, why, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, self.settings.reconnect_max_seconds)

    def _set_up(self, *, up: bool) -> None:
        if not up:
            self.reconciled = False
        if up != self.up:
            self.up = up
            selfmetrics.FOLLOWED_UNITS.inc(1 if up else -1)

    async def _read_when_woken(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            opened = self._opened
            try:
                ran = await self.ssh.run(IsActive(self.target.systemd_unit))
            except SshError as e:
                self.log.info("reading %s's state: %s", self.target.unit, e)
                continue
            words = ran.stdout.split()
            if not words:
                continue
            await self._apply(words[0])
            if self.up and opened == self._opened and not self.reconciled:
                self.reconciled = True
                self._checked.set()

    async def _apply(self, state: str) -> None:
        if state != self.state:
            self.log.info("unit %s: %s -> %s", self.target.unit, self.state, state)
        self.state = state
        wanted = self.settings.alerts.get(state)
        current = self._firing
        if current is not None and current.alert is wanted:
            return
        now = time.time()
        if current is not None:
            current.ends_at = now
            self._resolved.append(current)
            self._firing = None
        if wanted is not None:
            labels, annotations = wanted.alert(self.target.name, self.target.unit)
            self._firing = _Firing(wanted, labels, annotations, now)
        await self._push(now)

    async def _push(self, now: float) -> None:
        self._resolved = [
            r for r in self._resolved if r.ends_at and now - r.ends_at < RESOLVED_KEPT_SECONDS
        ]
        alerts: list[Alert] = [
            alert(r.labels, r.annotations, r.starts_at, r.ends_at or now) for r in self._resolved
        ]
        firing = self._firing
        if firing is not None:
            valid = VALID_FOR_RESENDS * self.settings.resend_seconds
            alerts.append(alert(firing.labels, firing.annotations, firing.starts_at, now + valid))
        if alerts:
            sent = list(self._resolved)
            self._pushes += 1
            self.delivered = await self.pusher.push(alerts)
            self._push_failed = not self.delivered
            if self._push_failed:
                self._failed.set()
            else:
                self._resolved = [r for r in self._resolved if r not in sent]

    async def _resend(self) -> None:
        """Send what fires again, and read the state (a transition the stream may have missed)."""
        while True:
            await asyncio.sleep(self.settings.resend_seconds)
            if self.up:
                self._wake.set()
                if self._firing is not None:
                    await self._push(time.time())
                else:
                    await self._check_ready()

    async def _check_when_reconciled(self) -> None:
        """After the stream's first read, as a task of its own: the reader never waits on it."""
        while True:
            await self._checked.wait()
            self._checked.clear()
            await self._check_ready()

    async def _check_ready(self) -> None:
        """With nothing firing nor unsent, whether a push would be taken now (`delivered`)."""
        if self._firing is not None or self._push_failed:
            return  # the last push, or its retry, decides
        pushes = self._pushes
        ready = await self.pusher.ready(self.settings.resend_seconds)
        if pushes == self._pushes:
            self.delivered = ready

    async def _retry(self) -> None:
        """A push no Alertmanager took is sent again every PUSH_RETRY_SECONDS until one does."""
        while True:
            await self._failed.wait()
            self._failed.clear()
            await asyncio.sleep(PUSH_RETRY_SECONDS)
            if self._push_failed:
                await self._push(time.time())


class Followers:
    """The UnitFollower of every target with an `ssh` section, kept in step with the config."""

    def __init__(self, pool: SshPool) -> None:
        self.pool = pool
        self._settings: UnitFollow | None = None
        self._pusher: AlertPusher | None = None
        self._running: dict[str, tuple[Target, UnitFollower, asyncio.Task[None]]] = {}
        self._opening = asyncio.Semaphore(OPENING_AT_ONCE)

    async def sync(self, config: Config) -> None:
        """Follow the units of `config`: unchanged targets go on, others stop or start."""
        settings = config.exporter.follow
        if settings != self._settings:
            await self._stop_all()
            if self._pusher is not None:
                await self._pusher.close()
            self._settings = settings
            self._pusher = None
            if settings is not None:
                self._pusher = AlertPusher(
                    settings.alertmanager_urls, settings.push_timeout_seconds
                )
        wanted = {t.name: t for t in config.targets if t.ssh is not None and settings is not None}
        for name, (target, _, task) in list(self._running.items()):
            if wanted.get(name) != target:
                del self._running[name]
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for name, target in wanted.items():
            if name in self._running:
                continue
            assert target.ssh is not None
            assert settings is not None
            assert self._pusher is not None
            follower = UnitFollower(
                target, self.pool.host(target.ssh), settings, self._pusher, self._opening
            )
            self._running[name] = (target, follower, asyncio.ensure_future(follower.run()))

    def running(self) -> list[UnitFollower]:
        return [follower for _, follower, _ in self._running.values()]

    def followed(self, name: str) -> bool | None:
        """Whether target `name`'s unit is `followed` now; None if it is not to be followed."""
        running = self._running.get(name)
        return None if running is None else running[1].followed

    async def _stop_all(self) -> None:
        tasks = [task for _, _, task in self._running.values()]
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self._stop_all()
        if self._pusher is not None:
            await self._pusher.close()
            self._pusher = None
