"""What `init` was asked for, and the config file and file layout that follow from it.

Everything lives beside the config file, in Debian's layout when that is /etc/redis-autoheal:

    config.yml              0644  the skeleton: targets, listen addresses, state and log paths
    webhook.token           0600  Alertmanager's bearer token (its credentials_file)
    tokens/ID               0600  one operator-API token per user
    ssh/id_ed25519(.pub)    0600  the remediator's SSH key pair
    ssh/known_hosts         0644  the host keys the user confirmed

Secrets are owned by the service user when there is one. The state and log directories are
the systemd units' (StateDirectory=, LogsDirectory=); init only names them in the config.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from redis_autoheal.config import Config, read_secret
from redis_autoheal.errors import ConfigError, InitRefused
from redis_autoheal.init import install
from redis_autoheal.init.hostkeys import Server
from redis_autoheal.schema import build

if TYPE_CHECKING:
    from pathlib import Path

AUDIT_FILE = "redis_service_management.log"
# These go into the shell lines printed for each host: nothing in them may be special there.
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9.:/*?,!-]+")
# A user id names its token file: no path in it.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True)
class TargetSpec:
    name: str
    host: str


@dataclass(frozen=True)
class UserSpec:
    id: str
    role: str
    email: str


@dataclass(frozen=True)
class Request:
    """The flags of one `init` run, parsed."""

    config: Path
    targets: tuple[TargetSpec, ...]
    users: tuple[UserSpec, ...]
    redis_port: int
    ssh_port: int
    ssh_user: str
    unit: str
    state_dir: Path
    logs_dir: Path
    exporter_listen: str
    remediator_listen: str
    ssh_from: str | None = None

    @property
    def dir(self) -> Path:
        return self.config.parent

    @property
    def webhook_token(self) -> Path:
        return self.dir / "webhook.token"

    @property
    def tokens_dir(self) -> Path:
        return self.dir / "tokens"

    def token(self, user: UserSpec) -> Path:
        return self.tokens_dir / user.id

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    @property
    def key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.ssh_dir / "id_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"


def config_data(req: Request) -> dict[str, Any]:
    """The config as data: what init chose; every other key keeps its default."""
    return {
        "targets": [
            {
                "name": t.name,
                "redis": {"host": t.host, "port": req.redis_port},
                "ssh": {
                    "host": t.host,
                    "port": req.ssh_port,
                    "user": req.ssh_user,
                    "key_file": str(req.key),
                    "known_hosts": str(req.known_hosts),
                },
                "unit": req.unit,
            }
            for t in req.targets
        ],
        "audit": {"path": str(req.logs_dir / AUDIT_FILE)},
        "exporter": {"listen": req.exporter_listen},
        "remediator": {
            "listen": req.remediator_listen,
            "webhook_token_file": str(req.webhook_token),
            "state_dir": str(req.state_dir),
        },
        "users": [
            {"id": u.id, "email": u.email, "role": u.role, "token_file": str(req.token(u))}
            for u in req.users
        ],
    }


def render_config(req: Request) -> str:
    head = (
        "# redis-autoheal: written by `redis-autoheal init`. Keys not shown have their\n"
        "# defaults; examples/config.yml in the source lists every key.\n"
        f"# Check it with: redis-autoheal check-config --config {req.config}\n"
    )
    return head + yaml.safe_dump(config_data(req), sort_keys=False, default_flow_style=False)


def validate(req: Request) -> None:
    """Refuse flags that would make an invalid config, naming the flag or config key at fault."""
    if not USER_NAME.fullmatch(req.ssh_user):
        raise InitRefused(f"--ssh-user must be a user name like autobot, got {req.ssh_user!r}")
    for t in req.targets:
        if not HOST_NAME.fullmatch(t.host):
            raise InitRefused(
                f"--target {t.name}=HOST: HOST must be an address or host name, got {t.host!r}"
            )
    for u in req.users:
        if not USER_ID.fullmatch(u.id):
            raise InitRefused(
                f"--user {u.id}:…: ID must be letters, digits and _.@- (it names the user's "
                f"token file), got {u.id!r}"
            )
    if req.ssh_from is not None and not SOURCE_PATTERN.fullmatch(req.ssh_from):
        raise InitRefused(
            f"--ssh-from must be addresses or patterns like 10.0.0.5,10.1.*, got {req.ssh_from!r}"
        )
    try:
        config = build(Config, config_data(req), "", req.dir)
    except ConfigError as e:
        raise InitRefused(f"the config would be invalid: {e}; nothing was changed") from None
    for what, values in (
        ("target name", [t.name for t in config.targets]),
        ("user id", [u.id for u in config.users]),
    ):
        dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if dup is not None:
            raise InitRefused(f"{what} {dup!r} given twice; nothing was changed")


def servers(req: Request) -> list[Server]:
    """One SSH server per distinct host, named by the targets on it."""
    names: dict[str, list[str]] = {}
    for t in req.targets:
        names.setdefault(t.host, []).append(t.name)
    return [Server(", ".join(n), host, req.ssh_port) for host, n in names.items()]


def hosts(req: Request) -> list[install.Host]:
    return [
        install.Host(s.host, s.port, req.ssh_user, (req.unit,), tuple(s.name.split(", ")))
        for s in servers(req)
    ]


def secret_problem(path: Path) -> str | None:
    """Why an existing token file cannot be kept (None: it can)."""
    try:
        read_secret(path, "", "a token file")
    except ConfigError as e:
        return e.problem
    return None


def key_problem(path: Path) -> str | None:
    """Why an existing private key cannot be kept (None: it can)."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return f"cannot read {path}: {e.strerror}"
    if not stat.S_ISREG(mode) or mode & 0o077:
        return f"{path} must be a regular file readable by its owner only (mode 600)"
    return None
