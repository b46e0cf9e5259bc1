"""The users of the operator API: whose a bearer token is, and what that user's role may do.

Users come from the config (`users`: id, email, role, token_file); their tokens are read once
when the app is built and only their SHA-256 digests are kept. A presented token is hashed and
compared with every user's digest by `hmac.compare_digest`, without stopping at a match, so
the time taken says neither whether nor for whom it matched, nor how long the real tokens are.
The webhook's token is not a user's: presented to the API it is a wrong token (401); it is
kept and compared the same way, as a digest (remediator.security.require_token).

What each role may do is the config's `permissions` (the runbook's defaults: start, restart and
reload for admin and operator; stop and reset_circuit_breaker for admin only). Reading a
target's health and logs is open to every configured user.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from redis_autoheal.commands import Action
from remediator.audit import Actor

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from redis_autoheal.config import Permissions, User

Permission = Literal["start", "stop", "restart", "reload", "reset_circuit_breaker"]
PERMISSIONS: tuple[Permission, ...] = (
    "start",
    "stop",
    "restart",
    "reload",
    "reset_circuit_breaker",
)
PERMISSION_OF: dict[Action, Permission] = {
    Action.START: "start",
    Action.STOP: "stop",
    Action.RESTART: "restart",
    Action.RELOAD: "reload",
}


@dataclass(frozen=True)
class ApiUser:
    """An authenticated caller of the API."""

    id: str
    email: str
    role: str

    @property
    def actor(self) -> Actor:
        """The user as the audit log records it."""
        return Actor(id=self.id, email=self.email, role=self.role)


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token: what is kept and compared, so that a comparison's time says
    nothing of the real token's length."""
    # aiohttp hands over a header's bytes that are not UTF-8 as lone surrogates: such a token is
    # hashed as the bytes that came, and so is simply no one's.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class UserDirectory:
    """Tokens to users, and roles to permissions; see the module docstring."""

    def __init__(
        self, users: Iterable[User], tokens: Mapping[str, str], permissions: Permissions
    ) -> None:
        self._users = [
            (token_digest(tokens[u.id]), ApiUser(id=u.id, email=u.email, role=u.role))
            for u in users
        ]
        self._roles: dict[Permission, frozenset[str]] = {
            p: frozenset(getattr(permissions, p)) for p in PERMISSIONS
        }

    def __len__(self) -> int:
        return len(self._users)

    def authenticate(self, token: str) -> ApiUser | None:
        """The user whose token this is, or None; constant time over all users."""
        presented = token_digest(token)
        found: ApiUser | None = None
        for digest, user in self._users:
            if hmac.compare_digest(presented, digest):
                found = user
        return found

    def may(self, user: ApiUser, permission: Permission) -> bool:
        """True if the user's role is among those `permissions.<permission>` lists."""
        return user.role in self._roles[permission]

    def roles(self, permission: Permission) -> tuple[str, ...]:
        """The roles allowed `permission`, sorted (for messages and the API description)."""
        return tuple(sorted(self._roles[permission]))
