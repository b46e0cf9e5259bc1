"""The errors of the shared core; the remediator's own are in remediator/errors.py.

    AutohealError
    ├── ConfigError             the config file (or a file it names) is wrong: one line, key first
    ├── CommandRejected         a command outside the runbook's whitelist; raised before any I/O
    ├── InitRefused             `redis-autoheal init` stopped before changing anything: why
    ├── SshError                an SSH command could not run to completion
    │   ├── SshConnectError     TCP connect, handshake or authentication failed or timed out
    │   │   ├── HostKeyError    the host key is unknown or changed: refused, never accepted
    │   │   └── SshAuthError    the server refused our key
    │   └── SshCommandTimeout   the command started but ran past its timeout: it was cut
    │                           (KILL sent) and has no exit code
    ├── RedisError              a Redis request failed (redis_autoheal/resp.py, links.py)
    │   ├── RedisConnectionError  the connection closed, was lost, or was refused (maxclients)
    │   │   ├── RedisAuthError    AUTH refused, or Redis wants a password it was not given
    │   │   └── RedisLoadingError LOADING: Redis is loading its dataset
    │   ├── RedisReplyError     an error reply, or a reply other than the command's
    │   │   └── RedisPermissionError  NOPERM: the ACL user may not run the command
    │   └── RedisProtocolError  bytes that are not RESP2
    └── RemediatorError         remediator/errors.py: raised by the remediator only

A command that ran and exited non-zero is not an exception: it is a result with its exit code.
"""

from __future__ import annotations


class AutohealError(Exception):
    """Base class of every error redis-autoheal raises on purpose."""


class ConfigError(AutohealError):
    """The config is invalid. The message is one line: `key.path: problem`."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class CommandRejected(AutohealError, ValueError):
    """A command, unit name or argument is outside the whitelist."""


class InitRefused(AutohealError):
    """`init` refused or could not do its job; the message says why, and nothing was changed."""


class SshError(AutohealError):
    """An SSH command did not run to completion."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: {message}")


class SshConnectError(SshError):
    """The SSH connection could not be established (unreachable, refused, auth, timeout)."""


class HostKeyError(SshConnectError):
    """The server's host key is not in known_hosts or does not match it."""


class SshAuthError(SshConnectError):
    """The SSH server refused our key (or the user)."""


class SshCommandTimeout(SshError):
    """The command started and ran past its timeout: KILL was sent to it (`killed` says
    whether the request could be sent) and its channel closed; it has no exit code."""

    def __init__(self, host: str, line: str, seconds: float, *, killed: bool) -> None:
        self.line = line
        self.seconds = seconds
        self.killed = killed
        signalled = "KILL sent" if killed else "KILL not sent: its channel had closed"
        super().__init__(host, f"{line!r} cut at timeout after {seconds:g}s ({signalled})")


class RedisError(AutohealError):
    """A Redis request failed. An error reply is returned as one of these in the reply's
    place (redis_autoheal/resp.py); the rest are raised."""


class RedisConnectionError(RedisError):
    """The connection cannot serve the request: closed, lost, or refused by Redis."""


class RedisAuthError(RedisConnectionError):
    """AUTH was refused (WRONGPASS, invalid password), or Redis wants one (NOAUTH)."""


class RedisLoadingError(RedisConnectionError):
    """LOADING: Redis is loading its dataset into memory and answers no command yet."""


class RedisReplyError(RedisError):
    """An error reply (`-ERR ...`), or a reply other than the command's."""


class RedisPermissionError(RedisReplyError):
    """NOPERM: the ACL user may not run the command."""


class RedisProtocolError(RedisError):
    """Bytes from Redis that are not RESP2."""
