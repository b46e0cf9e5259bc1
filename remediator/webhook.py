"""`POST /webhook`: Alertmanager's notifications in, validated, their decisions audited, then
their recoveries started in the background (remediator.dispatch).

Alertmanager retries on a 5xx or a timeout, never on a 4xx: a request that can never succeed
gets a 4xx and runs nothing; an audit log that cannot be written gets a 503 and runs nothing,
and the retry is admitted once it can (fail closed).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from remediator.alertmanager import parse_notification
from remediator.errors import AuditWriteError, CoordinationUnavailable, InvalidPayload
from remediator.events import Webhook
from remediator.keys import AUDIT, CONFIG, DISPATCHER, METRICS, WEBHOOK_TOKEN
from remediator.security import require_token

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

PATH = "/webhook"


@web.middleware
async def count_webhook_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`autoheal_webhook_requests_total{code}`: every answer of /webhook, refusals included."""
    if request.path != PATH:
        return await handler(request)
    counter = request.app[METRICS].webhook_requests
    try:
        response = await handler(request)
    except web.HTTPException as e:
        counter.labels(str(e.status)).inc()
        raise
    except Exception:
        counter.labels("500").inc()
        raise
    counter.labels(str(response.status)).inc()
    return response


async def _body(request: web.Request) -> object:
    """The decoded JSON body, or the 4xx that says why there is none."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Type must be application/json, got {request.content_type}\n"
        )
    limit = request.app[CONFIG].remediator.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()  # aiohttp answers 413 past client_max_size (= limit)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise web.HTTPBadRequest(text=f"malformed JSON: {e}\n") from None
    except RecursionError:  # Alertmanager's notifications are a few levels deep
        raise web.HTTPBadRequest(text="malformed JSON: nested too deeply\n") from None


async def receive(request: web.Request) -> web.Response:
    """Validate, decide, audit, start; see the module docstring."""
    app = request.app
    await require_token(request, app[WEBHOOK_TOKEN])
    data = await _body(request)
    try:
        notification = parse_notification(data)
    except InvalidPayload as e:
        raise web.HTTPUnprocessableEntity(
            text=f"not an Alertmanager v4 notification: {e}\n"
        ) from None
    dispatcher = app[DISPATCHER]
    try:
        await dispatcher.prepare(notification)
    except CoordinationUnavailable as e:
        log.warning("webhook refused: %s", e)
        raise web.HTTPServiceUnavailable(text="coordination unavailable: nothing was done\n") from e
    except AuditWriteError as e:  # a replica's claim, committed in etcd, not in its log
        log.warning("webhook refused: %s", e)
        raise web.HTTPServiceUnavailable(text="audit log unavailable: nothing was done\n") from e
    admission = dispatcher.admit(notification, request.remote)
    received = Webhook(
        service=None,
        operation="receive",
        source_ip=request.remote,
        success=True,
        receiver=notification.receiver,
        group_key=notification.group_key,
        status=notification.status,
        truncated_alerts=notification.truncated_alerts,
        alerts=[{**a.summary(), "disposition": d.value} for a, d in admission.decisions],
    )
    # The decisions are settled when the write ends, even if this request is cancelled
    # meanwhile: on disk means committed, not on disk means given back.
    write = asyncio.ensure_future(app[AUDIT].write(received, *admission.events))
    write.add_done_callback(functools.partial(dispatcher.settle, admission))
    try:
        await asyncio.shield(write)
    except AuditWriteError as e:
        log.warning("webhook refused: %s", e)
        raise web.HTTPServiceUnavailable(text="audit log unavailable: nothing was done\n") from e
    dispatcher.settle(admission, write)
    return web.json_response(
        {
            "status": "accepted",
            "alerts": [
                {"fingerprint": a.fingerprint, "disposition": d.value}
                for a, d in admission.decisions
            ],
        }
    )
