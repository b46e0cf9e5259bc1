"""The operator API described in OpenAPI 3.1, served at /api/openapi.json.

Built from the config when the app is made, so it names the configured targets (the `target`
path parameter is an enum of them) and the roles `permissions` gives each operation (in each
operation's description and its `x-roles`). Response schemas forbid unknown members, so
tests/remediator/test_openapi.py (every answer of every route checked against them) and the
schemathesis run there notice when the code and this description drift apart.

The webhook is not described here: its body is Alertmanager's (remediator/README.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from redis_autoheal import __version__
from redis_autoheal.commands import MAX_JOURNAL_LINES, Action
from redis_autoheal.config import Role
from remediator.control import RISK
from remediator.users import PERMISSION_OF

if TYPE_CHECKING:
    from redis_autoheal.config import Config
    from remediator.users import UserDirectory

PATH = "/api/openapi.json"
PREFIX = "/api/services/{target}"
JSON = "application/json"
PROBLEM = "application/problem+json"

Schema = dict[str, Any]


def _nullable(kind: str | list[str]) -> Schema:
    kinds = [kind] if isinstance(kind, str) else kind
    return {"type": [*kinds, "null"]}


def _object(properties: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": [k for k in properties if k not in optional],
        "additionalProperties": False,
    }


STATUS = {"type": "string", "enum": ["healthy", "warning", "critical"]}


def _check() -> Schema:
    return _object(
        {
            "name": {"type": "string"},
            "status": STATUS,
            "value": _nullable("number"),
            "warning": _nullable("number"),
            "critical": _nullable("number"),
            "detail": {"type": "string"},
        }
    )


def _layer(facts: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    return _object(
        {
            "status": STATUS,
            "success": {"type": "boolean"},
            "duration_seconds": {"type": "number", "minimum": 0},
            "reason": _nullable("string"),
            "message": {"type": "string"},
            **facts,
            "checks": {"type": "array", "items": {"$ref": "#/components/schemas/Check"}},
        },
        optional,
    )


def _schemas() -> dict[str, Schema]:
    number = _nullable("number")
    text = _nullable("string")
    performance = {
        "memory_used_mb": number,
        "memory_max_mb": number,
        "connected_clients": number,
        "maxclients": number,
        "ops_per_sec": number,
        "uptime_seconds": number,
        "rejected_connections": number,
        "rdb_last_bgsave_status": text,
        "role": text,
        "redis_version": text,
    }
    return {
        "Problem": {
            **_object(
                {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "reason": {"type": "string"},
                    "detail": {"type": "string"},
                    "exit_code": {"type": "integer"},
                },
                optional=("exit_code",),
            ),
            "description": "RFC 9457 problem details; `reason` is a fixed code.",
        },
        "User": _object(
            {"id": {"type": "string"}, "email": text, "role": {"type": "string"}},
        ),
        "Check": _check(),
        "CircuitBreaker": _object(
            {
                "open": _nullable("boolean"),
                "opened_at": text,
                "reason": text,
                "recent_recoveries": {"type": "integer", "minimum": 0},
                "max_recoveries": {"type": "integer"},
                "window_seconds": {"type": "number"},
                "status": STATUS,
                "error": {"type": "string"},
            },
            optional=("opened_at", "reason", "recent_recoveries", "error"),
        ),
        "Recovery": _object(
            {
                "recovery_id": text,
                "finished_at": text,
                "outcome": text,
                "success": _nullable("boolean"),
                "recovery_level": text,
                "attempts": _nullable("integer"),
                "duration_seconds": number,
                "reason": text,
            }
        ),
        "Health": _object(
            {
                "target": {"type": "string"},
                "status": STATUS,
                "checked_at": {"type": "string"},
                "layers": _object(
                    {
                        "connectivity": _layer({"latency_ms": number}),
                        "systemd": _layer(
                            {
                                "unit": {"type": "string"},
                                "ssh_up": {"type": "boolean"},
                                "state": text,
                            }
                        ),
                        "performance": _layer(performance, optional=tuple(performance)),
                    }
                ),
                "circuit_breaker": {"$ref": "#/components/schemas/CircuitBreaker"},
                "recoveries": {"type": "array", "items": {"$ref": "#/components/schemas/Recovery"}},
                "recoveries_error": {"type": "string"},
                "recovery_in_progress": {"type": "boolean"},
                "operation_in_progress": text,
            },
            optional=("recoveries_error",),
        ),
        "OperationResult": _object(
            {
                "operation_id": {"type": "string"},
                "target": {"type": "string"},
                "operation": {"type": "string", "enum": [a.value for a in Action]},
                "user": {"$ref": "#/components/schemas/User"},
                "success": {"type": "boolean"},
                "detail": {"type": "string"},
                "unit": {"type": "string"},
                "unit_state_before": text,
                "unit_state_after": text,
                "exit_code": _nullable("integer"),
                "duration_seconds": {"type": "number", "minimum": 0},
                "risk_level": {"type": "string", "enum": ["low", "moderate", "high"]},
                "circuit_breaker_opened": {"type": "boolean"},
            }
        ),
        "BreakerReset": _object(
            {
                "target": {"type": "string"},
                "was_open": {"type": "boolean"},
                "previous_reason": text,
                "circuit_breaker": {"$ref": "#/components/schemas/CircuitBreaker"},
            }
        ),
        "Logs": _object(
            {
                "target": {"type": "string"},
                "unit": {"type": "string"},
                "lines": {"type": "integer", "minimum": 1, "maximum": MAX_JOURNAL_LINES},
                "entries": {"type": "array", "items": {"type": "string"}},
            }
        ),
    }


def _problem(description: str, headers: dict[str, Any] | None = None) -> Schema:
    answer: Schema = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _ok(schema: str, description: str) -> Schema:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_REFUSALS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/UnknownTarget"},
}


def _operation(action: Action, roles: tuple[str, ...]) -> Schema:
    verb = action.value
    who = ", ".join(roles) or "no role"
    return {
        "operationId": verb,
        "summary": f"Manual {verb} of the target's unit (sudo -n systemctl {verb} UNIT)",
        "description": (
            f"Roles: {who} (config `permissions.{PERMISSION_OF[action]}`). Risk level: "
            f"{RISK[verb]}. Runs the whitelisted command over SSH, verifies the result as a "
            "recovery does and answers when done; one operation or recovery per target at a "
            "time (409 meanwhile)."
            + (
                " Also opens the target's circuit breaker first, so that auto-recovery does "
                "not start the service again; reset-circuit-breaker turns it back on."
                if action is Action.STOP
                else ""
            )
        ),
        "x-roles": list(roles),
        "security": [{"bearer": []}],
        "parameters": [{"$ref": "#/components/parameters/target"}],
        "responses": {
            "200": _ok("OperationResult", "done and verified"),
            **_REFUSALS,
            "409": _problem(
                "refused before running anything: the target is busy (with Retry-After), "
                "dry-run mode, no ssh section, or a reload of a unit that is not active",
                {"Retry-After": {"schema": {"type": "string"}}},
            ),
            **(
                {
                    "429": _problem(
                        "the target's start budget (3 starts in 11 s, below systemd's start "
                        "limit) is spent: Retry-After says when a start is possible again",
                        {"Retry-After": {"schema": {"type": "string"}}},
                    )
                }
                if action in (Action.START, Action.RESTART)
                else {}
            ),
            "502": _ok("OperationResult", "ran (or tried to) but failed or was not verified"),
            "503": {"$ref": "#/components/responses/AuditUnavailable"},
        },
    }


def build(config: Config, users: UserDirectory) -> dict[str, Any]:
    """The document for the app built from `config`; see the module docstring."""
    paths: dict[str, Any] = {
        f"{PREFIX}/health": {
            "get": {
                "operationId": "health",
                "summary": "The three health layers now, the circuit breaker, last recoveries",
                "description": "Any configured user. Always 200 once authorised: `status` says "
                "healthy, warning or critical by the runbook's thresholds.",
                "x-roles": list(get_args(Role)),
                "security": [{"bearer": []}],
                "parameters": [{"$ref": "#/components/parameters/target"}],
                "responses": {"200": _ok("Health", "the target's health"), **_REFUSALS},
            }
        },
    }
    for action in Action:
        roles = users.roles(PERMISSION_OF[action])
        paths[f"{PREFIX}/{action.value}"] = {"post": _operation(action, roles)}
    reset_roles = users.roles("reset_circuit_breaker")
    paths[f"{PREFIX}/reset-circuit-breaker"] = {
        "post": {
            "operationId": "resetCircuitBreaker",
            "summary": "Close the target's circuit breaker: auto-recovery acts on it again",
            "description": f"Roles: {', '.join(reset_roles) or 'no role'} (config "
            "`permissions.reset_circuit_breaker`). Audited before it is done.",
            "x-roles": list(reset_roles),
            "security": [{"bearer": []}],
            "parameters": [{"$ref": "#/components/parameters/target"}],
            "responses": {
                "200": _ok("BreakerReset", "closed"),
                **_REFUSALS,
                "503": {"$ref": "#/components/responses/AuditUnavailable"},
            },
        }
    }
    paths[f"{PREFIX}/logs"] = {
        "get": {
            "operationId": "logs",
            "summary": "The unit's journal: sudo -n journalctl -u UNIT -n N --no-pager",
            "description": "Any configured user. Audited as an ssh_command.",
            "x-roles": list(get_args(Role)),
            "security": [{"bearer": []}],
            "parameters": [
                {"$ref": "#/components/parameters/target"},
                {
                    "name": "lines",
                    "in": "query",
                    "required": False,
                    "description": f"how many lines, 1-{MAX_JOURNAL_LINES} (default 50)",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_JOURNAL_LINES,
                        "default": 50,
                    },
                },
            ],
            "responses": {
                "200": _ok("Logs", "the lines, oldest first"),
                "400": _problem("`lines` is not a whole number 1-1000"),
                **_REFUSALS,
                "409": _problem("the target has no ssh section"),
                "502": _problem("SSH failed, or journalctl exited non-zero"),
                "503": {"$ref": "#/components/responses/AuditUnavailable"},
            },
        }
    }
    paths[PATH] = {
        "get": {
            "operationId": "openapi",
            "summary": "This description",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
                "403": {"$ref": "#/components/responses/Forbidden"},
            },
        }
    }
    text = {"text/plain": {"schema": {"type": "string"}}}
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "200 while the process serves, 503 once it is shutting down (no token, "
            "any address)",
            "responses": {
                "200": {"description": "ok", "content": text},
                "503": {"description": "shutting down: admitting nothing", "content": text},
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "The remediator's metrics, Prometheus text format (no token, any address)",
            "responses": {"200": {"description": "metrics", "content": text}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "redis-autoheal remediator: operator API",
            "version": __version__,
            "description": (
                "Health, manual operations, circuit-breaker reset and logs of the configured "
                "Redis targets (the runbook's Manual Intervention Procedures). A bearer token of "
                "a configured user (`users[].token_file`) is required, except here and on "
                "/healthz and /metrics. A caller outside remediator.allowed_networks gets 403."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                "target": {
                    "name": "target",
                    "in": "path",
                    "required": True,
                    "description": "a configured target's name",
                    "schema": {"type": "string", "enum": [t.name for t in config.targets]},
                }
            },
            "responses": {
                "Unauthorized": _problem(
                    "no bearer token, or not the token of a configured user",
                    {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
                ),
                "Forbidden": _problem(
                    "the user's role is not permitted this, or the address is not allowed"
                ),
                "UnknownTarget": _problem("no such target is configured"),
                "AuditUnavailable": _problem(
                    "the audit log cannot be written, the remediator is shutting down "
                    "(reason shutting_down, with Retry-After), or a replica cannot reach etcd "
                    "(reason coordination_unavailable): nothing was done",
                    {"Retry-After": {"schema": {"type": "string"}}},
                ),
            },
            "schemas": _schemas(),
        },
    }
