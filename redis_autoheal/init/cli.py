"""`redis-autoheal init`: a config that checks, its secrets, and what to install on each host.

The run checks everything before it writes anything: the flags, the service user, the files
already there (kept when they are what init would write, or a valid secret; otherwise only
--force replaces them), each host's SSH key (fetched and confirmed). Then it writes all its
files at once (`staging`) and prints the steps for each Redis host (`install`). Run again with
the same flags, it changes nothing and prints the same steps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

import asyncssh

from redis_autoheal.errors import InitRefused
from redis_autoheal.init import hostkeys, install, plan
from redis_autoheal.init.staging import NewDir, NewFile, Owner, write_all

AddConfig = Callable[[argparse.ArgumentParser], None]
SERVICE_USER = "redis-autoheal"  # the systemd units' User=


def _target(value: str) -> plan.TargetSpec:
    name, sep, host = value.partition("=")
    if not sep or not name or not host:
        raise argparse.ArgumentTypeError(f"must be NAME=HOST, got {value!r}")
    return plan.TargetSpec(name, host)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {value!r}")
    return seconds


def _user(value: str) -> plan.UserSpec:
    parts = value.split(":")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"must be ID:ROLE:EMAIL, got {value!r}")
    return plan.UserSpec(*parts)


def _owner(name: str | None) -> tuple[Owner, str]:
    """The service user's (uid, gid) and name; (None, whoever runs init) when there is none."""
    try:
        entry = pwd.getpwnam(name or SERVICE_USER)
    except KeyError:
        if name is not None:
            raise InitRefused(f"--service-user {name}: no such user; nothing was changed") from None
        return None, pwd.getpwuid(os.getuid()).pw_name
    return (entry.pw_uid, entry.pw_gid), entry.pw_name


class _Files:
    """The files of this run: what is kept, and what is to be written (and why)."""

    def __init__(self, force: bool) -> None:
        self.force = force
        self.write: list[NewFile] = []
        self.report: list[str] = []

    def text(self, path: Path, data: str, mode: int, owner: Owner = None) -> None:
        """A file with known content: kept if identical, else written (replacing: --force)."""
        try:
            old: bytes | None = path.read_bytes()
        except FileNotFoundError:
            old = None
        except OSError as e:
            raise InitRefused(f"cannot read {path}: {e.strerror}; nothing was changed") from None
        if old == data.encode():
            self.report.append(f"kept     {path}")
            return
        if old is not None and not self.force:
            raise InitRefused(
                f"{path} exists and differs from what init would write: pass --force to "
                "replace it; nothing was changed"
            )
        self.report.append(f"{'replaced' if old is not None else 'wrote':8} {path}")
        self.write.append(NewFile(path, data.encode(), mode, owner))

    def secret(
        self, path: Path, problem: str | None, new: Callable[[], bytes], owner: Owner
    ) -> None:
        """A secret: kept if it exists and is sound, else made (replacing a bad one: --force)."""
        exists = path.exists() or path.is_symlink()
        if exists and problem is None:
            self.report.append(f"kept     {path}")
            return
        if exists and not self.force:
            raise InitRefused(
                f"{path} exists but cannot be used ({problem}): fix or remove it, or pass "
                "--force to replace it; nothing was changed"
            )
        self.report.append(f"{'replaced' if exists else 'wrote':8} {path}")
        self.write.append(NewFile(path, new(), 0o600, owner))


def _token() -> bytes:
    return (secrets.token_urlsafe(32) + "\n").encode()


def _key_pair(req: plan.Request, files: _Files, owner: Owner) -> str:
    """Keep or make the SSH key pair; return the public key (OpenSSH format)."""
    problem = plan.key_problem(req.key) if req.key.exists() else "missing"
    key: asyncssh.SSHKey | None = None
    if problem is None:
        try:
            key = asyncssh.read_private_key(req.key)
        except (OSError, asyncssh.KeyImportError) as e:
            problem = f"not a private key asyncssh can read: {e}"
    if key is None:
        key = asyncssh.generate_private_key(
            "ssh-ed25519", comment=f"redis-autoheal@{socket.gethostname()}"
        )
    made = key
    files.secret(req.key, problem, lambda: made.export_private_key("openssh"), owner)
    public = key.export_public_key("openssh").decode()
    files.text(req.public_key, public, 0o644)
    return public


async def _fetch_all(
    servers: list[hostkeys.Server], trust: hostkeys.Trust, wait_seconds: float
) -> list[asyncssh.SSHKey]:
    return list(
        await asyncio.gather(
            *(hostkeys.fetch(s, wait_seconds, hostkeys.algorithms_for(s, trust)) for s in servers)
        )
    )


def _request(args: argparse.Namespace) -> plan.Request:
    config = Path(args.config).expanduser().absolute()
    return plan.Request(
        config=config,
        targets=tuple(args.target),
        users=tuple(args.user),
        redis_port=args.redis_port,
        ssh_port=args.ssh_port,
        ssh_user=args.ssh_user,
        unit=args.unit,
        state_dir=Path(args.state_dir).absolute(),
        logs_dir=Path(args.logs_dir).absolute(),
        exporter_listen=args.exporter_listen,
        remediator_listen=args.remediator_listen,
        ssh_from=args.ssh_from,
    )


def _init(args: argparse.Namespace) -> int:
    req = _request(args)
    plan.validate(req)
    owner, owner_name = _owner(args.service_user)
    files = _Files(args.force)
    files.text(req.config, plan.render_config(req), 0o644)
    files.secret(req.webhook_token, plan.secret_problem(req.webhook_token), _token, owner)
    for u in req.users:
        files.secret(req.token(u), plan.secret_problem(req.token(u)), _token, owner)
    public = _key_pair(req, files, owner)

    trust = hostkeys.Trust(
        ours=req.known_hosts,
        theirs=args.known_hosts,
        fingerprints=frozenset(args.accept_host_key),
        replace_ours=args.force,
    )
    servers = plan.servers(req)
    keys = asyncio.run(_fetch_all(servers, trust, args.connect_timeout))
    prompt = hostkeys.terminal_prompt()
    accepted = [
        f"{s.name}: {k.get_algorithm()} {hostkeys.fingerprint(k)} "
        f"({hostkeys.accept(s, k, trust, prompt)})"
        for s, k in zip(servers, keys, strict=True)
    ]
    known = "".join(hostkeys.known_hosts_line(s, k) for s, k in zip(servers, keys, strict=True))
    files.text(req.known_hosts, known, 0o644)

    dirs = [
        NewDir(req.dir, 0o755),
        NewDir(req.tokens_dir, 0o700, owner),
        NewDir(req.ssh_dir, 0o700, owner),
    ]
    write_all(dirs, files.write)

    print(f"redis-autoheal init: {req.config} and its files (secrets owned by {owner_name}):")
    for line in files.report:
        print(f"  {line}")
    print("Host keys trusted:")
    for line in accepted:
        print(f"  {line}")
    print(f"Check it with: redis-autoheal check-config --config {req.config}")
    print(
        f"Alertmanager's webhook receiver sends the token in {req.webhook_token} "
        "(http_config.authorization.credentials_file)."
    )
    key_line = install.authorized_keys_line(public, req.ssh_from)
    for host in plan.hosts(req):
        print()
        print(install.render(host, key_line), end="")
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_config: AddConfig
) -> None:
    """Add the `init` subcommand; `add_config` adds the shared --config option."""
    p = sub.add_parser(
        "init",
        help="write a config, its secrets and known_hosts; print what to install on each host",
        description="Write a config for the given Redis hosts (the --config file, default "
        "/etc/redis-autoheal/config.yml) with the webhook token, user tokens, an SSH key pair "
        "and known_hosts beside it; fetch each host's SSH key and have it confirmed; print "
        "what to install on each host. Files already there are kept when they are what init "
        "would write (or a usable secret); anything else needs --force. On any error nothing "
        "is changed.",
    )
    add_config(p)
    p.add_argument(
        "--target",
        type=_target,
        action="append",
        required=True,
        metavar="NAME=HOST",
        help="a Redis target: its name and the host running it (repeat for more)",
    )
    p.add_argument(
        "--user",
        type=_user,
        action="append",
        default=[],
        metavar="ID:ROLE:EMAIL",
        help="an operator-API user (role admin or operator) who gets a token (repeat)",
    )
    p.add_argument("--redis-port", type=int, default=6379, help="Redis' port (default 6379)")
    p.add_argument("--ssh-port", type=int, default=22, help="sshd's port (default 22)")
    p.add_argument("--ssh-user", default="autobot", help="the SSH user (default autobot)")
    p.add_argument("--unit", default="redis-server", help="the systemd unit (default redis-server)")
    p.add_argument(
        "--service-user",
        metavar="USER",
        help=f"who owns the secrets (default {SERVICE_USER} if that user exists, else you)",
    )
    p.add_argument(
        "--state-dir",
        default="/var/lib/redis-autoheal",
        help="remediator.state_dir (default /var/lib/redis-autoheal)",
    )
    p.add_argument(
        "--logs-dir",
        default="/var/log/redis-autoheal",
        help="where the audit log goes (default /var/log/redis-autoheal)",
    )
    p.add_argument("--exporter-listen", default="127.0.0.1:9121", metavar="HOST:PORT")
    p.add_argument("--remediator-listen", default="127.0.0.1:9122", metavar="HOST:PORT")
    p.add_argument(
        "--accept-host-key",
        action="append",
        default=[],
        metavar="FINGERPRINT",
        help="trust a host key with this SHA256 fingerprint, as `ssh-keygen -lf` shows it on "
        "the host (repeat; for scripts: no question asked)",
    )
    p.add_argument(
        "--known-hosts",
        type=Path,
        metavar="FILE",
        help="trust the host keys this known_hosts file lists (for scripts)",
    )
    p.add_argument(
        "--ssh-from",
        metavar="PATTERN",
        help='add from="PATTERN" to the authorized_keys line: the address(es) the remediator '
        "connects from",
    )
    p.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each host's SSH server (default 10)",
    )
    p.add_argument("--force", action="store_true", help="replace files that differ")
    p.set_defaults(func=_init)
