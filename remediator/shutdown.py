"""Serving until SIGTERM or SIGINT, then draining without leaving anything half-recorded.

`Shutdown` is the stopping state: once set, every POST answers 503 with Retry-After, while GETs
are still served; `drain` waits up to the grace for what runs and then cancels it (each
recovery and operation writes its `interrupted` end as it goes). A second signal cuts the
grace short. What a SIGKILL cuts is found at the next start instead (remediator.resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from remediator.problems import problem

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Collection

    from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

HANDLER_TIMEOUT_SECONDS = 5.0  # after the drain: the GETs still answering get this long


class Shutdown:
    """The remediator's stopping state: whether it stopped admitting, and what still runs."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.stopping = asyncio.Event()
        self._admitting = 0  # POSTs past the door, not answered yet
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.grace_seconds)))

    def refusal(self, request: web.Request) -> web.HTTPException:
        detail = "the remediator is shutting down: nothing new is admitted; try again shortly"
        headers = {"Retry-After": self.retry_after}
        if request.path.startswith("/api/"):
            return problem(503, detail, "shutting_down", headers=headers)
        return web.HTTPServiceUnavailable(text=detail + "\n", headers=headers)

    async def admitting(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse what would admit work once stopping; count the POSTs being answered."""
        if request.method != "POST":
            return await handler(request)
        if self.stopping.is_set():
            raise self.refusal(request)
        self._admitting += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._admitting -= 1
            if not self._admitting:
                self._idle.set()

    async def drain(
        self,
        running: Callable[[], Collection[asyncio.Future[Any]]],
        cancel: Callable[[], Awaitable[object]],
        hurry: asyncio.Event,
    ) -> None:
        """Stop admitting, wait up to the grace for `running()` and the POSTs in flight to
        end (or for `hurry`), then `cancel()` what is left."""
        self.stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_seconds
        log.info("shutting down: nothing new is admitted; waiting up to %gs", self.grace_seconds)
        while not hurry.is_set():
            waits = {*running()}
            if not waits and self._idle.is_set():
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("shutting down: the grace is over; interrupting what still runs")
                break
            waiters = {
                asyncio.ensure_future(self._idle.wait()),
                asyncio.ensure_future(hurry.wait()),
            }
            try:
                await asyncio.wait(
                    waits | waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for w in waiters:
                    w.cancel()
        await cancel()


async def serve(  # noqa: PLR0913 -- listening is keyword-only, the rest as before
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    drain: Callable[[asyncio.Event], Awaitable[None]],
    *,
    listening: Callable[[], object] = lambda: None,
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then `drain(hurry)` before closing the listener;
    `hurry` is set by a second signal. `listening()` is called once the port is bound."""
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=HANDLER_TIMEOUT_SECONDS
    )
    loop = asyncio.get_running_loop()
    signalled, hurry = asyncio.Event(), asyncio.Event()

    def on_signal(signum: int) -> None:
        if signalled.is_set():
            log.warning("%s again: interrupting what still runs now", signal.Signals(signum).name)
            hurry.set()
        else:
            log.info("%s: shutting down", signal.Signals(signum).name)
            signalled.set()

    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await runner.setup()
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        listening()
        await signalled.wait()
        await drain(hurry)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
