"""Who may call the remediator: its address (remediator.allowed_networks), bearer token and role.

- the webhook takes the webhook token (`require_token`);
- the operator API takes a user's token (`require_user`: 401 without a valid one, with
  `WWW-Authenticate: Bearer`) and then that user's role must be permitted the operation
  (`require_permission`: 403 otherwise);
- a caller outside `allowed_networks` gets 403 before anything else is looked at.

Every rejection is counted in `autoheal_security_violations_total{reason}` and audited, best
effort: the request is refused whether or not that could be written, since refusing changes
nothing. A refusal by role is a `security_violation` event each time; those of callers without
a valid token are aggregated per source address (remediator.violations): the first in full,
the rest counted into `security_violation_summary` events, so that no flood of them can push
earlier events out of the audit log. No token, right or wrong, is ever logged or audited;
what is (the method, the path, the User-Agent) is cut to a bound and its control characters are
escaped (`redis_autoheal.logs.printable`), so that one request writes one log line, never a
forged second one, and a few hundred bytes at most.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from redis_autoheal.logs import printable
from remediator.audit import AUTOHEAL, audit_event
from remediator.errors import AuditWriteError
from remediator.keys import AUDIT, CONFIG, METRICS, USERS, VIOLATIONS
from remediator.problems import problem
from remediator.users import token_digest

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from remediator.users import ApiUser, Permission

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/metrics"})  # what a scraper or a liveness probe needs


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="redis-autoheal"'}
METHOD_LIMIT = 16  # characters of a request method kept in a log line or audit field


async def violation(
    request: web.Request,
    reason: str,
    detail: str,
    *,
    user: ApiUser | None = None,
    service: str | None = None,
) -> None:
    """Count, log and (best effort) audit a refused request."""
    app = request.app
    app[METRICS].security_violations.labels(reason).inc()
    operation = f"{printable(request.method, METHOD_LIMIT)} {printable(request.path)}"
    source = printable(request.remote or "")
    event = audit_event(
        "security_violation",
        service=service,
        operation=operation,
        user=user.actor if user else AUTOHEAL,
        source_ip=request.remote,
        success=False,
        command_validated=False,
        risk_level="high",
        reason=reason,
        detail=printable(detail),
        user_agent=printable(request.headers.get("User-Agent", "")) or None,
    )
    if user is None:  # no valid token: aggregated per source (remediator.violations)
        in_full = await app[VIOLATIONS].record(event)
    else:
        in_full = True
        try:
            await app[AUDIT].write(event)
        except AuditWriteError as e:
            log.warning("could not audit a security violation: %s", e)
    who = f" by {user.id} ({user.role})" if user else ""
    log.log(
        logging.WARNING if in_full else logging.DEBUG,  # the rest: in the source's summary
        "refused %s from %s%s: %s",
        operation,
        source,
        who,
        printable(detail),
    )


LOOPBACK_NAMES = frozenset({"localhost"})


def exposure_warning(host: str, *, tls: bool) -> str | None:
    """What to warn about when listening on `host`: tokens in clear beyond this machine."""
    if tls:
        return None
    if host in LOOPBACK_NAMES or any(a.is_loopback for a in client_addresses(host)):
        return None
    return (
        f"listening on {host}, beyond loopback, without TLS: bearer tokens and alerts cross "
        "the network in clear; set remediator.tls_cert_file and tls_key_file, or listen on "
        "127.0.0.1 behind a TLS proxy"
    )


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_token(request: web.Request, expected: bytes) -> None:
    """Raise 401 unless the request's bearer token is the one whose digest is `expected`.

    Digests are compared, not tokens: `hmac.compare_digest` takes as long for any two strings
    of one length, but returns at once when the lengths differ, which told the token's length.
    """
    token = bearer_token(request)
    if token is None:
        await violation(request, "missing_token", "no bearer token")
        raise web.HTTPUnauthorized(text="a bearer token is required\n", headers=CHALLENGE)
    if not hmac.compare_digest(token_digest(token), expected):
        await violation(request, "invalid_token", "wrong bearer token")
        raise web.HTTPUnauthorized(text="invalid bearer token\n", headers=CHALLENGE)


async def require_user(request: web.Request) -> ApiUser:
    """The configured user whose token the request carries; 401 (a problem) otherwise."""
    token = bearer_token(request)
    if token is None:
        await violation(request, "missing_token", "no bearer token")
        raise problem(401, "a bearer token is required", "missing_token", headers=CHALLENGE)
    user = request.app[USERS].authenticate(token)
    if user is None:
        await violation(request, "invalid_token", "not the token of a configured user")
        raise problem(401, "invalid bearer token", "invalid_token", headers=CHALLENGE)
    return user


async def require_permission(
    request: web.Request, user: ApiUser, permission: Permission, target: str
) -> None:
    """403 (a problem) unless the user's role is permitted `permission`; nothing runs then."""
    users = request.app[USERS]
    if users.may(user, permission):
        return
    allowed = ", ".join(users.roles(permission)) or "no role"
    detail = f"role {user.role!r} may not {permission} (permitted: {allowed})"
    await violation(request, "forbidden_role", detail, user=user, service=target)
    raise problem(403, detail, "forbidden_role")


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_addresses(remote: str | None) -> tuple[IpAddress, ...]:
    """The caller's address, first as IPv4 if it is IPv4-mapped (`::ffff:a.b.c.d`); () if none."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return ()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return (address.ipv4_mapped, address)
    return (address,)


@web.middleware
async def allowed_networks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (403) callers outside remediator.allowed_networks; an empty list allows all.

    An IPv4 client of a dual-stack listener on `::` comes as `::ffff:a.b.c.d`: it is matched,
    audited and logged as `a.b.c.d`, the address it has (a network written as mapped addresses
    still matches it).
    """
    addresses = client_addresses(request.remote)
    if addresses and str(addresses[0]) != request.remote:
        request = request.clone(remote=str(addresses[0]))
    networks = request.app[CONFIG].remediator.allowed_networks
    if networks and request.path not in OPEN_PATHS:
        within = (ipaddress.ip_network(n, strict=False) for n in networks)
        if not any(a in network for network in within for a in addresses):
            await violation(request, "address_not_allowed", f"{request.remote} not allowed")
            raise web.HTTPForbidden(text="address not allowed\n")
    return await handler(request)
