"""The runbook's command whitelist, as typed values.

A command is built from a typed value, never from a string, and the value's constructor
rejects anything outside the whitelist before any network I/O:

    sudo -n systemctl start|stop|restart|reload UNIT
    sudo -n WRAPPER FENCE start|stop|restart|reload UNIT   (a replica's fenced step: see below)
    systemctl is-active UNIT
    systemctl status UNIT
    sudo -n journalctl -u UNIT -n N --no-pager        (1 <= N <= 1000)
    sudo -n journalctl -u UNIT -f -n 1 -o json --no-pager    (a stream: see JournalFollow)

Why `sudo -n`, and why journalctl goes through sudo: the README, "What runs on the Redis host".
A remediator replica's recovery step may instead go through the host's fenced wrapper
(packaging/host/redis-autoheal-fenced, `coordination.etcd.fenced_command`), which refuses a
fence lower than one it has seen with exit FENCE_REFUSED.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from enum import StrEnum

from redis_autoheal.errors import CommandRejected

MAX_JOURNAL_LINES = 1000
MAX_UNIT_NAME = 255  # systemd's limit, suffix included
FENCE_REFUSED = 77  # the fenced wrapper's exit code for a fence below the highest it has seen
# The fenced wrapper's absolute path: nothing a shell or sudoers would read specially.
_WRAPPER = re.compile(r"(?:/[A-Za-z0-9_.-]+)+")

# systemd's unit-name grammar (systemd.unit(5)) for a service, minus the backslash escapes:
# ASCII letters, digits and ":-_." with one optional "@instance". A leading "-" would be read
# as an option, so the first character is stricter. Nothing here is special to a shell.
_UNIT_NAME = re.compile(r"[A-Za-z0-9_:][A-Za-z0-9_.:-]*(?:@[A-Za-z0-9_.:-]*)?")
_OTHER_UNIT_TYPES = (
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".slice",
    ".scope",
)


class Action(StrEnum):
    """A state-changing systemctl verb the runbook allows through sudo."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    RELOAD = "reload"


def validate_unit(name: object) -> str:
    """Return `name` if it is a service unit name the whitelist accepts, else raise."""
    if not isinstance(name, str):
        raise CommandRejected(f"unit name must be a string, got {type(name).__name__}")
    if not name or len(name) > MAX_UNIT_NAME:
        raise CommandRejected(f"unit name must be 1-{MAX_UNIT_NAME} characters, got {len(name)}")
    if not _UNIT_NAME.fullmatch(name):
        raise CommandRejected(
            f"unit name {name!r} is not a systemd unit name "
            "(letters, digits, ':', '-', '_', '.', one '@'; not starting with '-' or '.')"
        )
    if ".." in name or name.endswith("."):
        raise CommandRejected(f"unit name {name!r} has an empty component ('..' or a trailing '.')")
    if name.endswith(_OTHER_UNIT_TYPES):
        raise CommandRejected(f"unit {name!r} is not a service unit")
    return name


@dataclass(frozen=True, slots=True)
class Unit:
    """A validated systemd service unit name."""

    name: str

    def __post_init__(self) -> None:
        validate_unit(self.name)

    def __str__(self) -> str:
        return self.name


def validate_wrapper(path: object) -> str:
    """Return `path` if it can name the fenced wrapper (an absolute path, plain characters)."""
    parts = path.split("/") if isinstance(path, str) else []
    if not isinstance(path, str) or not _WRAPPER.fullmatch(path) or {".", ".."} & set(parts):
        raise CommandRejected(
            f"the fenced wrapper must be an absolute path of letters, digits, '_', '.', '-', "
            f"like /usr/local/sbin/redis-autoheal-fenced, got {path!r}"
        )
    return path


def _check_unit(unit: object) -> None:
    if not isinstance(unit, Unit):
        raise CommandRejected(f"unit must be a Unit, got {type(unit).__name__}")
    validate_unit(unit.name)  # a frozen dataclass can still be forced: check again


@dataclass(frozen=True, slots=True)
class ServiceControl:
    """`sudo -n systemctl ACTION UNIT`: the only commands that change anything. Fenced (see
    `fenced`), the same step as `sudo -n WRAPPER FENCE ACTION UNIT`."""

    action: Action
    unit: Unit
    wrapper: str | None = None  # the fenced wrapper's path on the host
    fence: int | None = None  # the replica's claim revision, which the wrapper compares

    def __post_init__(self) -> None:
        if not isinstance(self.action, Action):
            raise CommandRejected(f"action must be one of {[a.value for a in Action]}")
        _check_unit(self.unit)
        if (self.wrapper is None) != (self.fence is None):
            raise CommandRejected("a fenced command needs both the wrapper and the fence")
        if self.wrapper is not None:
            validate_wrapper(self.wrapper)
            if type(self.fence) is not int or self.fence <= 0:
                raise CommandRejected(f"a fence must be a positive integer, got {self.fence!r}")

    def fenced(self, wrapper: str, fence: int) -> ServiceControl:
        """The same step, run through the host's fenced wrapper with this fence."""
        return ServiceControl(self.action, self.unit, wrapper, fence)

    @property
    def name(self) -> str:
        return self.action.value

    @property
    def read_only(self) -> bool:
        return False

    def argv(self) -> tuple[str, ...]:
        if self.wrapper is not None:
            fence = str(self.fence)
            return ("sudo", "-n", self.wrapper, fence, self.action.value, self.unit.name)
        return ("sudo", "-n", "systemctl", self.action.value, self.unit.name)


@dataclass(frozen=True, slots=True)
class IsActive:
    """`systemctl is-active UNIT`: prints the unit's active state; exit 0 only when active."""

    unit: Unit

    def __post_init__(self) -> None:
        _check_unit(self.unit)

    @property
    def name(self) -> str:
        return "is-active"

    @property
    def read_only(self) -> bool:
        return True

    def argv(self) -> tuple[str, ...]:
        return ("systemctl", "is-active", self.unit.name)


@dataclass(frozen=True, slots=True)
class Status:
    """`systemctl status UNIT`: the human-readable status block."""

    unit: Unit

    def __post_init__(self) -> None:
        _check_unit(self.unit)

    @property
    def name(self) -> str:
        return "status"

    @property
    def read_only(self) -> bool:
        return True

    def argv(self) -> tuple[str, ...]:
        return ("systemctl", "status", self.unit.name)


@dataclass(frozen=True, slots=True)
class Journal:
    """`sudo -n journalctl -u UNIT -n N --no-pager`, 1 <= N <= 1000."""

    unit: Unit
    lines: int

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if type(self.lines) is not int:  # bool is an int subclass: refuse it too
            raise CommandRejected(f"lines must be an integer, got {type(self.lines).__name__}")
        if not 1 <= self.lines <= MAX_JOURNAL_LINES:
            raise CommandRejected(f"lines must be 1-{MAX_JOURNAL_LINES}, got {self.lines}")

    @property
    def name(self) -> str:
        return "journalctl"

    @property
    def read_only(self) -> bool:
        return True

    def argv(self) -> tuple[str, ...]:
        return (
            "sudo",
            "-n",
            "journalctl",
            "-u",
            self.unit.name,
            "-n",
            str(self.lines),
            "--no-pager",
        )


@dataclass(frozen=True, slots=True)
class JournalFollow:
    """`sudo -n journalctl -u UNIT -f -n 1 -o json --no-pager`: the unit's journal as it grows.

    It never ends by itself: SshHost.follow runs it as a stream. `-n 1` prints the newest
    entry first, which proves the journal is being followed; `-o json` lets the reader tell
    systemd's messages about the unit from the service's own output. The runbook's sudoers
    line `/bin/journalctl -u redis-server *` already allows it.
    """

    unit: Unit

    def __post_init__(self) -> None:
        _check_unit(self.unit)

    @property
    def name(self) -> str:
        return "journalctl-follow"

    @property
    def read_only(self) -> bool:
        return True

    def argv(self) -> tuple[str, ...]:
        unit = self.unit.name
        return ("sudo", "-n", "journalctl", "-u", unit, "-f", "-n", "1", "-o", "json", "--no-pager")


# What SshHost.run runs to its end; JournalFollow is whitelisted too, but only as a stream.
Command = ServiceControl | IsActive | Status | Journal
COMMAND_TYPES = (ServiceControl, IsActive, Status, Journal, JournalFollow)


def command_line(command: object) -> str:
    """The exact line sent to the SSH server, after checking `command` once more."""
    if not isinstance(command, COMMAND_TYPES):
        raise CommandRejected(f"not a whitelisted command: {type(command).__name__}")
    command.__post_init__()  # re-validate: the value may have been tampered with
    return shlex.join(command.argv())
