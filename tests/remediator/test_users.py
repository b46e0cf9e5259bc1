"""The user directory: whose a token is, in constant time over every user; roles to
permissions from the config."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from redis_autoheal.config import Permissions, User
from remediator.users import PERMISSIONS, UserDirectory

USERS = [
    User(id="a", email="a@x", role="admin", token_file=Path("/dev/null")),
    User(id="o", email="o@x", role="operator", token_file=Path("/dev/null")),
    User(id="p", email="p@x", role="operator", token_file=Path("/dev/null")),
]
TOKENS = {"a": "token-of-a", "o": "token-of-o", "p": "a-much-longer-token-of-p-0123456789"}


def directory(permissions: Permissions | None = None) -> UserDirectory:
    return UserDirectory(USERS, TOKENS, permissions or Permissions())


def test_each_token_is_its_users_and_no_other_is_anyones() -> None:
    users = directory()
    assert len(users) == 3
    for user in USERS:
        found = users.authenticate(TOKENS[user.id])
        assert found is not None
        assert (found.id, found.email, found.role) == (user.id, user.email, user.role)
        assert found.actor.as_json() == {"id": user.id, "email": user.email, "role": user.role}
    for wrong in ("", "token-of-", "token-of-a ", "TOKEN-OF-A", "token-of-a\n", "x" * 10_000):
        assert users.authenticate(wrong) is None


@pytest.mark.parametrize("token", ["token-of-a", "token-of-o", "nobody's", ""])
def test_every_user_is_compared_whatever_the_token(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit: the same work for the first user's token, the last's, and a wrong one;
    and always on digests of one length, so not even the tokens' lengths show."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    directory().authenticate(token)
    assert calls == [(32, 32)] * len(USERS)


def test_the_tokens_themselves_are_not_kept() -> None:
    users = directory()
    kept = repr(vars(users))
    for token in TOKENS.values():
        assert token not in kept


def test_permissions_are_the_configs() -> None:
    users = directory()
    admin, operator = users.authenticate("token-of-a"), users.authenticate("token-of-o")
    assert admin is not None
    assert operator is not None
    assert all(users.may(admin, p) for p in PERMISSIONS)
    assert [p for p in PERMISSIONS if users.may(operator, p)] == ["start", "restart", "reload"]
    assert users.roles("stop") == ("admin",)
    strict = directory(Permissions(start=("admin",), restart=(), reload=("operator",)))
    assert not strict.may(operator, "start")
    assert not strict.may(admin, "restart")
    assert strict.roles("restart") == ()
    assert not strict.may(admin, "reload")
