"""What `init` tells the user to install on each Redis host, as shell steps to run there as root.

Three steps a host: the remediator's public key in the SSH user's authorized_keys (with
`restrict`: no forwarding, no terminal; the remediator needs neither), the sudoers file that
lets that user run the whitelisted systemctl and journalctl commands (the runbook's lines, one
set per unit), and a drop-in that makes the unit behave as recovery expects (systemd does not
restart Redis behind the remediator's back; reload is SIGHUP). Each step can be run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

# The runbook's "Sudo Permissions": what the SSH user may run as root, per unit.
SUDO_COMMANDS = (
    "/bin/systemctl start {unit}",
    "/bin/systemctl stop {unit}",
    "/bin/systemctl restart {unit}",
    "/bin/systemctl reload {unit}",
    "/bin/systemctl status {unit}",
    "/bin/journalctl -u {unit} *",
)
DROPIN_NAME = "redis-autoheal.conf"
DROPIN = """\
[Service]
Restart=no
ExecReload=/bin/kill -HUP $MAINPID
"""


@dataclass(frozen=True)
class Host:
    """One SSH server and what the remediator manages on it."""

    address: str
    port: int
    user: str
    units: tuple[str, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One numbered step: what it is for, and the shell lines that do it."""

    title: str
    script: str


def authorized_keys_line(public_key: str, source: str | None) -> str:
    """The public key with the options that fit: `restrict`, and `from=` when given."""
    options = "restrict" if source is None else f'restrict,from="{source}"'
    return f"{options} {public_key.strip()}"


def sudoers(user: str, units: Sequence[str]) -> str:
    lines = ["# Written by redis-autoheal init: what the remediator may run as root."]
    lines += [
        f"{user} ALL=(ALL) NOPASSWD: {c.format(unit=u)}" for u in units for c in SUDO_COMMANDS
    ]
    return "\n".join(lines) + "\n"


def sudoers_path(user: str) -> str:
    # The runbook's name for user autobot. No dot in it: sudo skips files whose name has one,
    # which is what keeps the staged copy below inert until visudo has checked it.
    return f"/etc/sudoers.d/{user}-redis"


def dropin_path(unit: str) -> str:
    return f"/etc/systemd/system/{unit}.service.d/{DROPIN_NAME}"


def steps(host: Host, key_line: str) -> list[Step]:
    """The three steps for `host`, each runnable on its own and again."""
    user, home = host.user, f"~{host.user}"
    keys = f"{home}/.ssh/authorized_keys"
    key_step = Step(
        f"the remediator's SSH key, for {user}",
        f"id -u {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}\n"
        f"install -d -m 700 -o {user} -g {user} {home}/.ssh\n"
        f"touch {keys} && chown {user}: {keys} && chmod 600 {keys}\n"
        f"grep -qxF '{key_line}' {keys} || echo '{key_line}' >> {keys}\n",
    )
    path = sudoers_path(user)
    sudo_step = Step(
        f"the commands {user} may run as root (checked by visudo before it takes effect)",
        f"cat > {path}.new <<'EOF'\n{sudoers(user, host.units)}EOF\n"
        f"visudo -cf {path}.new && chmod 440 {path}.new && mv {path}.new {path}\n",
    )
    dropins = "".join(
        f"mkdir -p /etc/systemd/system/{u}.service.d\ncat > {dropin_path(u)} <<'EOF'\n{DROPIN}EOF\n"
        for u in host.units
    )
    unit_step = Step(
        "systemd leaves restarts to the remediator; reload is SIGHUP",
        f"{dropins}systemctl daemon-reload\n",
    )
    return [key_step, sudo_step, unit_step]


def render(host: Host, key_line: str) -> str:
    """The instructions for one host, as printed."""
    where = host.address if host.port == 22 else f"{host.address} (SSH port {host.port})"
    head = f"On {where}, for {', '.join(host.targets)}: run as root"
    parts = [head]
    for i, step in enumerate(steps(host, key_line), 1):
        parts.append(f"# {i}. {step.title}\n{step.script}")
    return "\n".join(parts)
