"""Who may call what: the identities and endpoints of the operator API's auth matrix, and the
answer each combination must get (shared by test_api, test_operations and test_tls)."""

from __future__ import annotations

from tests.remediator.configs import ADMIN, ADMIN_TOKEN, OPERATOR, TOKEN, WRONG_TOKEN

ENDPOINTS = [
    ("GET", "health"),
    ("GET", "logs"),
    ("POST", "start"),
    ("POST", "stop"),
    ("POST", "restart"),
    ("POST", "reload"),
    ("POST", "reset-circuit-breaker"),
]
IDENTITIES: dict[str, dict[str, str]] = {
    "none": {},
    "wrong": {"Authorization": f"Bearer {WRONG_TOKEN}"},
    "webhook": {"Authorization": f"Bearer {TOKEN}"},  # the webhook's token is no user's
    "basic": {"Authorization": f"Basic {ADMIN_TOKEN}"},  # a user's token, wrong scheme
    "empty": {"Authorization": "Bearer "},
    "operator": OPERATOR,
    "admin": ADMIN,
}
ADMIN_ONLY = {"stop", "reset-circuit-breaker"}
# What a permitted call answers when the target has no ssh section: a refusal that ran nothing.
PERMITTED_NO_SSH = {"health": 200, "reset-circuit-breaker": 200, "logs": 409}


def expected(endpoint: str, who: str, permitted: int) -> int:
    if who not in ("operator", "admin"):
        return 401
    if endpoint in ADMIN_ONLY and who == "operator":
        return 403
    return permitted


def violation_reason(who: str, status: int) -> str | None:
    if status == 403:
        return "forbidden_role"
    if status == 401:
        return "missing_token" if who in ("none", "basic", "empty") else "invalid_token"
    return None
