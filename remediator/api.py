"""The operator API: the routes under /api/services/{target}/ and their handlers.

A request passes remediator.security's checks (address, token, role), then the target (404) and
its parameters (400); operations run through remediator.operations, and every error is a problem
document (remediator.problems). What each request answers: the README, "The operator API".
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from redis_autoheal.commands import MAX_JOURNAL_LINES, Action, Journal
from redis_autoheal.errors import SshError
from remediator import openapi
from remediator.errors import AuditWriteError, BreakerStateError, NoSshConfigured, OperationRefused
from remediator.health import breaker_health, check_target
from remediator.keys import (
    BREAKER,
    CONFIG,
    CONTROLS,
    DISPATCHER,
    OPENAPI,
    OPERATIONS,
    PROBERS,
)
from remediator.problems import problem
from remediator.security import require_permission, require_user
from remediator.users import PERMISSION_OF

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from remediator.control import TargetControl
    from remediator.users import ApiUser

PREFIX = "/api/services/{target}"
DEFAULT_LOG_LINES = 50  # the runbook's `journalctl -u redis-server -n 50`
_LINES = re.compile(r"[0-9]{1,7}")


def _target(request: web.Request) -> TargetControl:
    name = request.match_info["target"]
    control = request.app[CONTROLS].get(name)
    if control is None:
        raise problem(404, f"no target {name!r} is configured", "unknown_target")
    return control


def _audit_unavailable(e: AuditWriteError) -> web.HTTPException:
    return problem(503, f"audit log unavailable: nothing was done ({e})", "audit_unavailable")


async def health(request: web.Request) -> web.Response:
    """The target's health now; always 200 once authorised: the body says how it is."""
    await require_user(request)
    control = _target(request)
    app = request.app
    config = app[CONFIG]
    name = control.name
    activity = {
        "recovery_in_progress": app[DISPATCHER].running(name) is not None,
        "operation_in_progress": app[OPERATIONS].activity(name),
    }
    report = await check_target(
        app[PROBERS][name],
        breaker=app[BREAKER],
        breaker_settings=config.circuit_breaker,
        audit=config.audit,
        activity=activity,
    )
    return web.json_response(report.as_json())


def _operation(action: Action) -> Handler:
    async def operate(request: web.Request) -> web.StreamResponse:
        user = await require_user(request)
        permission = PERMISSION_OF[action]
        await require_permission(request, user, permission, request.match_info["target"])
        control = _target(request)
        try:
            result = await request.app[OPERATIONS].perform(
                control.name, action, user, request.remote
            )
        except OperationRefused as e:
            status = {
                "start_limit": 429,
                "shutting_down": 503,
                "coordination_unavailable": 503,
            }.get(e.reason, 409)
            wait = e.retry_after
            headers = None if wait is None else {"Retry-After": str(max(1, math.ceil(wait)))}
            raise problem(status, str(e), e.reason, headers=headers) from None
        except AuditWriteError as e:
            raise _audit_unavailable(e) from None
        return web.json_response(result.as_json(), status=200 if result.success else 502)

    operate.__name__ = operate.__qualname__ = action.value
    operate.__doc__ = f"POST .../{action.value}: the manual {action.value}; see the module doc."
    return operate


async def reset_circuit_breaker(request: web.Request) -> web.Response:
    """Close the target's breaker (audited first): auto-recovery acts on it again."""
    user = await require_user(request)
    await require_permission(request, user, "reset_circuit_breaker", request.match_info["target"])
    control = _target(request)
    app = request.app
    try:
        before, _ = await app[OPERATIONS].reset_breaker(control.name, user, request.remote)
    except AuditWriteError as e:
        raise _audit_unavailable(e) from None
    except BreakerStateError as e:
        raise problem(503, f"circuit breaker state unusable: {e}", "breaker_state") from None
    _, after = await asyncio.to_thread(
        breaker_health, app[BREAKER], control.name, app[CONFIG].circuit_breaker
    )
    return web.json_response(
        {
            "target": control.name,
            "was_open": before.open,
            "previous_reason": before.reason,
            "circuit_breaker": after,
        }
    )


def _lines(request: web.Request) -> int:
    values = request.query.getall("lines", [])
    if not values:
        return DEFAULT_LOG_LINES
    if len(values) > 1:
        raise problem(400, "give `lines` once", "bad_lines")
    text = values[0]
    if not _LINES.fullmatch(text) or not 1 <= int(text) <= MAX_JOURNAL_LINES:
        raise problem(
            400,
            f"lines must be a whole number 1-{MAX_JOURNAL_LINES}, got {text[:20]!r}",
            "bad_lines",
        )
    return int(text)


async def logs(request: web.Request) -> web.Response:
    """The unit's last N journal lines: `sudo -n journalctl -u UNIT -n N --no-pager`."""
    user: ApiUser = await require_user(request)
    control = _target(request)
    lines = _lines(request)
    try:
        result = await control.run(
            Journal(control.unit, lines), actor=user.actor, source_ip=request.remote
        )
    except NoSshConfigured as e:
        raise problem(409, str(e), "no_ssh") from None
    except AuditWriteError as e:
        raise _audit_unavailable(e) from None
    except SshError as e:
        raise problem(502, str(e), "ssh_error") from None
    if not result.ok:
        raise problem(
            502,
            f"journalctl exited {result.exit_code}: {result.stderr.strip()[:300]}",
            "command_failed",
            exit_code=result.exit_code,
        )
    entries = result.stdout.splitlines()
    body: dict[str, Any] = {
        "target": control.name,
        "unit": control.unit.name,
        "lines": lines,
        "entries": entries,
    }
    return web.json_response(body)


async def openapi_document(request: web.Request) -> web.Response:
    """This API described in OpenAPI 3.1 (no token needed: it holds no secret)."""
    return web.json_response(request.app[OPENAPI])


def setup_routes(app: web.Application) -> None:
    """The API's routes (remediator.app adds the webhook's and the open ones)."""
    app.router.add_get(f"{PREFIX}/health", health)
    for action in Action:
        app.router.add_post(f"{PREFIX}/{action.value}", _operation(action))
    app.router.add_post(f"{PREFIX}/reset-circuit-breaker", reset_circuit_breaker)
    app.router.add_get(f"{PREFIX}/logs", logs)
    app.router.add_get(openapi.PATH, openapi_document)
