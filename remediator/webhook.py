"""`POST /webhook`: Alertmanager's notifications in, recoveries started in the background.

Alertmanager waits for the answer and retries on a 5xx or a timeout, never on a 4xx. So:
- 200 as soon as the notification is validated, its decisions are audited and its recoveries
  started: the recoveries themselves run in the background;
- 4xx for a request that will never succeed: 401 no or wrong token, 403 address not allowed,
  413 body over `remediator.max_body_bytes`, 415 not JSON, 400 malformed JSON (or nested too
  deeply to decode), 422 not an Alertmanager v4 notification (a field missing or of the wrong
  type, a time that is no time or out of range). Nothing runs.
- 503 when the audit log cannot be written: nothing runs, and Alertmanager's retry comes back
  when it can (fail closed).

`max_body_bytes` (1 MiB) must fit the largest notification: an alert with the labels and
annotations of alerts/ takes about 1 KiB, so 1 MiB fits Alertmanager's `max_alerts` up to about
500; set `max_alerts` in the receiver's webhook_config below that.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from remediator.alertmanager import parse_notification
from remediator.audit import audit_event
from remediator.errors import AuditWriteError, InvalidPayload
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
    admission = app[DISPATCHER].admit(notification, request.remote)
    received = audit_event(
        "webhook",
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
    write.add_done_callback(admission.settle)
    try:
        await asyncio.shield(write)
    except AuditWriteError as e:
        log.warning("webhook refused: %s", e)
        raise web.HTTPServiceUnavailable(text="audit log unavailable: nothing was done\n") from e
    admission.settle(write)
    return web.json_response(
        {
            "status": "accepted",
            "alerts": [
                {"fingerprint": a.fingerprint, "disposition": d.value}
                for a, d in admission.decisions
            ],
        }
    )
