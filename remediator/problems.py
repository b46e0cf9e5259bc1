"""Errors of the operator API as RFC 9457 problem details, one shape for every refusal.

    HTTP/1.1 409 Conflict
    Content-Type: application/problem+json

    {"type": "about:blank", "title": "Conflict", "status": 409, "reason": "busy",
     "detail": "target 'redis' is busy: a recovery is running; try again when it ends"}

`reason` is a short fixed code a script can test; `detail` is for a person. Under /api/ the
`api_problems` middleware also turns aiohttp's own refusals (404 no such route, 405 with its
`Allow` header, 413) and an unexpected exception (500, logged with its traceback) into this
shape, so a client never has to parse two kinds of error.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from redis_autoheal.logs import printable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
PROBLEM_JSON = "application/problem+json"

_EXCEPTIONS: dict[int, type[web.HTTPException]] = {
    cls.status_code: cls
    for cls in (
        web.HTTPBadRequest,
        web.HTTPUnauthorized,
        web.HTTPForbidden,
        web.HTTPNotFound,
        web.HTTPConflict,
        web.HTTPRequestEntityTooLarge,
        web.HTTPTooManyRequests,
        web.HTTPInternalServerError,
        web.HTTPBadGateway,
        web.HTTPServiceUnavailable,
    )
}
# What a refusal by aiohttp or another middleware keeps when it is rewritten.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def body(status: int, detail: str, reason: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    """The problem document for `status`."""
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "reason": reason,
        "detail": detail,
        **extra,
    }


def problem(
    status: int,
    detail: str,
    reason: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,  # noqa: ANN401 -- more JSON members
) -> web.HTTPException:
    """The exception to raise for a refusal; its body is the problem document."""
    cls = _EXCEPTIONS[status]
    return cls(
        text=json.dumps(body(status, detail, reason, **extra)),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def _reason_code(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


@web.middleware
async def api_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api/: every error answer as problem details; see the module docstring."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == PROBLEM_JSON:
            raise
        detail = f"{request.method} {request.path}: {e.reason}"
        if e.text and not e.text.startswith(f"{e.status}: "):  # aiohttp's default says no more
            detail = e.text.strip()
        headers = {k: e.headers[k] for k in _KEPT_HEADERS if k in e.headers}
        return web.json_response(
            body(e.status, detail, _reason_code(e.status)),
            status=e.status,
            headers=headers,
            content_type=PROBLEM_JSON,
        )
    except Exception:
        log.exception("%s %s failed", printable(request.method, 16), printable(request.path))
        return web.json_response(
            body(500, "internal error: see the remediator's log", "internal_error"),
            status=500,
            content_type=PROBLEM_JSON,
        )
