"""Who may call the remediator: its address (remediator.allowed_networks) and bearer token.

Every rejection is counted in `autoheal_security_violations_total{reason}` and audited as a
`security_violation` event, best effort: the request is refused whether or not that event could
be written, since refusing changes nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from redis_autoheal.errors import AuditWriteError
from remediator.audit import audit_event
from remediator.keys import AUDIT, CONFIG, METRICS

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/metrics"})  # what a scraper or a liveness probe needs


async def violation(request: web.Request, reason: str, detail: str) -> None:
    """Count, log and (best effort) audit a refused request."""
    app = request.app
    app[METRICS].security_violations.labels(reason).inc()
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, detail)
    event = audit_event(
        "security_violation",
        service=None,
        operation=f"{request.method} {request.path}",
        source_ip=request.remote,
        success=False,
        command_validated=False,
        risk_level="high",
        reason=reason,
        detail=detail,
    )
    try:
        await app[AUDIT].write(event)
    except AuditWriteError as e:
        log.warning("could not audit a security violation: %s", e)


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_token(request: web.Request, expected: str) -> None:
    """Raise 401 unless the request carries `expected` as its bearer token."""
    token = bearer_token(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="redis-autoheal"'}
    if token is None:
        await violation(request, "missing_token", "no bearer token")
        raise web.HTTPUnauthorized(text="a bearer token is required\n", headers=challenge)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        await violation(request, "invalid_token", "wrong bearer token")
        raise web.HTTPUnauthorized(text="invalid bearer token\n", headers=challenge)


@web.middleware
async def allowed_networks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (403) callers outside remediator.allowed_networks; an empty list allows all."""
    networks = request.app[CONFIG].remediator.allowed_networks
    if networks and request.path not in OPEN_PATHS:
        try:
            address = ipaddress.ip_address(request.remote or "")
        except ValueError:
            address = None
        if address is None or not any(
            address in ipaddress.ip_network(n, strict=False) for n in networks
        ):
            await violation(request, "address_not_allowed", f"{request.remote} not allowed")
            raise web.HTTPForbidden(text="address not allowed\n")
    return await handler(request)
