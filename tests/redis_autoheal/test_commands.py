"""The whitelist: nothing outside the runbook's commands can be built or sent."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redis_autoheal.commands import (
    Action,
    IsActive,
    Journal,
    ServiceControl,
    Status,
    Unit,
    command_line,
)
from redis_autoheal.errors import CommandRejected

# The runbook's whitelist, as the exact lines that may reach a shell.
_UNIT = r"[A-Za-z0-9_:][A-Za-z0-9_.:-]*(?:@[A-Za-z0-9_.:-]*)?"
WHITELIST = [
    re.compile(rf"sudo -n systemctl (start|stop|restart|reload) {_UNIT}"),
    re.compile(rf"systemctl is-active {_UNIT}"),
    re.compile(rf"systemctl status {_UNIT}"),
    re.compile(rf"sudo -n journalctl -u {_UNIT} -n ([1-9][0-9]{{0,2}}|1000) --no-pager"),
    # a replica's recovery step through the host's fenced wrapper
    re.compile(rf"sudo -n (/[A-Za-z0-9_.-]+)+ [1-9][0-9]* (start|stop|restart|reload) {_UNIT}"),
]


def whitelisted(line: str) -> bool:
    return any(p.fullmatch(line) for p in WHITELIST)


def test_runbook_commands_render_exactly() -> None:
    unit = Unit("redis-server")
    assert (
        command_line(ServiceControl(Action.START, unit)) == "sudo -n systemctl start redis-server"
    )
    assert command_line(ServiceControl(Action.RELOAD, unit)) == (
        "sudo -n systemctl reload redis-server"
    )
    assert command_line(IsActive(unit)) == "systemctl is-active redis-server"
    assert command_line(Status(unit)) == "systemctl status redis-server"
    assert command_line(Journal(unit, 50)) == "sudo -n journalctl -u redis-server -n 50 --no-pager"


@pytest.mark.parametrize(
    "name",
    [
        "redis-server; rm -rf /",
        "redis server",
        "redis-server\n",
        "redis\nserver",
        "../etc/passwd",
        "redis..server",
        "a..b",
        "-H",
        "--help",
        ".hidden",
        "redis$(id)",
        "redis`id`",
        "redis|cat",
        "redis&",
        "redis>x",
        "redis'x",
        'redis"x',
        "redis\\x2d",
        "redis\tserver",
        "",
        "a" * 256,
        "redis.socket",
        "multi-user.target",
        "a@b@c",
        "trailing.",
        "ünïcode",
    ],
)
def test_bad_unit_names_are_rejected(name: str) -> None:
    with pytest.raises(CommandRejected):
        Unit(name)


@pytest.mark.parametrize(
    "name", ["redis-server", "redis-server.service", "redis@6380", "redis@6380.service", "a:b_c"]
)
def test_good_unit_names_pass(name: str) -> None:
    assert Unit(name).name == name


@pytest.mark.parametrize("lines", [0, -1, 1001, 10**9])
def test_journal_lines_out_of_range(lines: int) -> None:
    with pytest.raises(CommandRejected, match="1-1000"):
        Journal(Unit("redis-server"), lines)


@pytest.mark.parametrize("lines", [True, 1.0, "50", None])
def test_journal_lines_must_be_int(lines: object) -> None:
    with pytest.raises(CommandRejected, match="integer"):
        Journal(Unit("redis-server"), lines)  # type: ignore[arg-type]


def test_action_must_be_the_enum() -> None:
    with pytest.raises(CommandRejected):
        ServiceControl("start; id", Unit("redis-server"))  # type: ignore[arg-type]
    with pytest.raises(CommandRejected):
        ServiceControl(Action.START, "redis-server")  # type: ignore[arg-type]


def test_tampered_value_is_caught_before_sending() -> None:
    cmd = IsActive(Unit("redis-server"))
    object.__setattr__(cmd.unit, "name", "redis; id")
    with pytest.raises(CommandRejected):
        command_line(cmd)


def test_a_fenced_step_runs_through_the_wrapper_with_its_fence() -> None:
    step = ServiceControl(Action.RESTART, Unit("redis-server"))
    fenced = step.fenced("/usr/local/sbin/redis-autoheal-fenced", 42)
    assert command_line(fenced) == (
        "sudo -n /usr/local/sbin/redis-autoheal-fenced 42 restart redis-server"
    )
    assert fenced.name == "restart"
    assert not fenced.read_only


@pytest.mark.parametrize(
    ("wrapper", "fence"),
    [
        ("redis-autoheal-fenced", 1),  # not absolute
        ("/usr/local/sbin/x; id", 1),
        ("/usr/local/../bin/sh", 1),
        ("/usr/local/sbin/redis-autoheal-fenced", 0),
        ("/usr/local/sbin/redis-autoheal-fenced", True),
    ],
)
def test_a_bad_wrapper_or_fence_is_rejected(wrapper: str, fence: int) -> None:
    with pytest.raises(CommandRejected):
        ServiceControl(Action.START, Unit("redis-server")).fenced(wrapper, fence)
    with pytest.raises(CommandRejected, match="both"):
        ServiceControl(Action.START, Unit("redis-server"), wrapper="/usr/sbin/x")


def test_strings_are_not_commands() -> None:
    with pytest.raises(CommandRejected):
        command_line("systemctl is-active redis-server")


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)


@st.composite
def any_command(draw: st.DrawFn) -> object:
    """Try to build any command from arbitrary input; None when construction was refused."""
    unit_name = draw(st.one_of(_text, st.from_regex(_UNIT, fullmatch=True)))
    kind = draw(st.sampled_from(["control", "is-active", "status", "journal"]))
    try:
        unit = Unit(unit_name)
        if kind == "control":
            action = Action(draw(st.one_of(_text, st.sampled_from([a.value for a in Action]))))
            command = ServiceControl(action, unit)
            if draw(st.booleans()):
                wrapper = draw(st.one_of(_text, st.just("/usr/local/sbin/redis-autoheal-fenced")))
                command = command.fenced(wrapper, draw(st.integers()))
            return command
        if kind == "journal":
            return Journal(unit, draw(st.integers(min_value=-(10**6), max_value=10**6)))
        return IsActive(unit) if kind == "is-active" else Status(unit)
    except (CommandRejected, ValueError):
        return None


@given(any_command())
def test_no_input_yields_a_command_outside_the_whitelist(cmd: object) -> None:
    if cmd is None:
        return
    assert whitelisted(command_line(cmd))


@given(_text)
def test_unit_names_accepted_are_shell_inert(name: str) -> None:
    try:
        unit = Unit(name)
    except CommandRejected:
        return
    assert not set(unit.name) & set(" \t\n\r;|&$`'\"\\<>()*?[]{}!#~")
    assert not unit.name.startswith(("-", "."))
    assert ".." not in unit.name
