"""Everything a test host keeps in its work directory, and how it is generated.

Nothing here touches the real /etc: the accounts, sudoers and the systemctl/journalctl stand-ins
are files in the work directory that the host's init bind-mounts over the real ones inside its
private mount namespace.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from testhost import _hostinit, _standin

if TYPE_CHECKING:
    from testhost.netns import Net

USER = "autobot"
UNIT = "redis-server"
REDIS_PORT = 6379
SSH_PORT = 22
MARKER = ".redis-autoheal-testhost"
PYTHON = "/usr/bin/python3"
REDIS_SERVER = "/usr/bin/redis-server"
SSHD = "/usr/sbin/sshd"

# The runbook's "Security Considerations > Sudo Permissions" file, verbatim.
SUDOERS = """\
# Allow autobot user to manage Redis service
autobot ALL=(ALL) NOPASSWD: /bin/systemctl start redis-server
autobot ALL=(ALL) NOPASSWD: /bin/systemctl stop redis-server
autobot ALL=(ALL) NOPASSWD: /bin/systemctl restart redis-server
autobot ALL=(ALL) NOPASSWD: /bin/systemctl reload redis-server
autobot ALL=(ALL) NOPASSWD: /bin/systemctl status redis-server
autobot ALL=(ALL) NOPASSWD: /bin/journalctl -u redis-server *
"""

# The fenced wrapper a remediator replica's recovery steps go through, and its sudoers line, as
# the README ("Running several remediators") installs them: with HostOptions(fenced=True).
FENCED = "/usr/local/sbin/redis-autoheal-fenced"
FENCED_STATE = "/var/lib/redis-autoheal-fenced"
FENCED_SOURCE = Path(__file__).resolve().parents[1] / "packaging" / "host" / "redis-autoheal-fenced"
SUDOERS_FENCED = f"{USER} ALL=(root) NOPASSWD: {FENCED} [0-9]* {UNIT}\n"

# The runbook's Appendix B redis.conf settings that make sense in a box.
RUNBOOK_SAVE = ("save 900 1", "save 300 10", "save 60 10000")


@dataclasses.dataclass(frozen=True)
class HostOptions:
    """How to build a host; the defaults are the runbook's VM3."""

    hostname: str = "vm3"
    redis_running: bool = True
    rdb: bool = False
    password: str | None = None
    redis_config: tuple[str, ...] = ()
    timeout_start: float = 90.0
    timeout_stop: float = 90.0
    start_limit_interval: float = 10.0
    start_limit_burst: int = 5
    ready_timeout: float = 15.0
    fenced: bool = False  # install the fenced wrapper and its sudoers line


@dataclasses.dataclass(frozen=True)
class Layout:
    """The paths inside one host's work directory."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def description(self) -> Path:
        return self.root / "host.json"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def home(self) -> Path:
        return self.root / "home" / USER

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"

    @property
    def sshd_dir(self) -> Path:
        return self.root / "sshd"

    @property
    def host_key(self) -> Path:
        return self.sshd_dir / "ssh_host_ed25519_key"

    @property
    def sshd_config(self) -> Path:
        return self.sshd_dir / "sshd_config"

    @property
    def sshd_log(self) -> Path:
        return self.sshd_dir / "sshd.log"

    @property
    def sshd_pid(self) -> Path:
        return self.sshd_dir / "sshd.pid"

    @property
    def client(self) -> Path:
        return self.root / "client"

    @property
    def key_file(self) -> Path:
        return self.client / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.client / "known_hosts"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def redis_conf(self) -> Path:
        return self.redis / "redis.conf"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def init_socket(self) -> Path:
        return self.run / "init.sock"

    @property
    def init_ready(self) -> Path:
        return self.run / "init.ready"

    @property
    def init_config(self) -> Path:
        return self.run / "hostinit.json"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def init_log(self) -> Path:
        return self.log / "hostinit.log"

    @property
    def fenced_state(self) -> Path:
        return self.root / "fenced"

    @property
    def varlog(self) -> Path:
        return self.root / "varlog"


def check_traversable(path: Path) -> None:
    """autobot must reach its home and the stand-ins' state: every ancestor needs o+x."""
    for parent in [path, *path.parents]:
        if not parent.stat().st_mode & 0o001:
            raise PermissionError(f"{parent} is not searchable by others (o+x); autobot needs it")


def make_dirs(lay: Layout, uid: int) -> None:
    lay.root.chmod(0o755)
    lay.marker.write_text("a redis-autoheal test host lives here\n")
    for path, mode in [
        (lay.bin, 0o755),
        (lay.etc / "sudoers.d", 0o755),
        (lay.home / ".ssh", 0o700),
        (lay.sshd_dir, 0o700),
        (lay.client, 0o700),
        (lay.redis / "data", 0o755),
        (lay.state, 0o755),
        (lay.run, 0o700),
        (lay.log, 0o755),
        (lay.varlog, 0o755),
    ]:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
    lay.home.chmod(0o755)
    for path in (lay.home, lay.home / ".ssh"):
        os.chown(path, uid, uid)
    # `systemctl is-active` runs as autobot (no sudo): the log of what it saw is autobot's.
    queries = _standin.Paths(lay.state).queries
    queries.touch(mode=0o644)
    os.chown(queries, uid, uid)


def generate_keys(lay: Layout) -> None:
    """The client key pair (autobot's) and the host key, generated in parallel."""
    stamp = time.strftime("%Y%m%d")
    jobs = [
        (lay.key_file, f"autobot-redis-{stamp}"),
        (lay.host_key, "redis-autoheal-testhost"),
    ]
    running = [
        subprocess.Popen(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            stdin=subprocess.DEVNULL,
        )
        for path, comment in jobs
    ]
    for proc in running:
        if proc.wait(timeout=30) != 0:
            raise RuntimeError("ssh-keygen failed")
    lay.key_file.chmod(0o600)


def _original(path: Path) -> Path:
    return path.with_name(path.name + ".orig")


def keep_original_host_key(lay: Layout) -> None:
    """Set the host's first key pair aside (once), so restore_original_host_key can put it back."""
    for path in (lay.host_key, lay.host_key.with_suffix(".pub")):
        if not _original(path).exists():
            shutil.copy2(path, _original(path))


def restore_original_host_key(lay: Layout) -> bool:
    """Put the key pair set aside by keep_original_host_key back; False if none was set aside."""
    pairs = [(lay.host_key, _original(lay.host_key))]
    pairs.append((lay.host_key.with_suffix(".pub"), _original(lay.host_key.with_suffix(".pub"))))
    if not all(orig.exists() for _, orig in pairs):
        return False
    for path, orig in pairs:
        orig.replace(path)
    return True


def new_host_key(lay: Layout) -> None:
    """Replace the host key (for change_host_key); sshd reads it again on SIGHUP."""
    tmp = lay.sshd_dir / "new_host_key"
    for path in (tmp, tmp.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "changed", "-f", str(tmp)],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    tmp.with_suffix(".pub").replace(lay.host_key.with_suffix(".pub"))
    tmp.replace(lay.host_key)


def pick_uid() -> int:
    """A uid/gid free in the real user and group databases (used only inside the host)."""
    used: set[int] = set()
    for db in (Path("/etc/passwd"), Path("/etc/group")):
        for line in db.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                used.add(int(fields[2]))
    return next(n for n in range(1500, 60000) if n not in used)


def write_accounts(lay: Layout, uid: int) -> None:
    """Copies of passwd, group and shadow with autobot added (shadow '*': no password, usable)."""
    days = int(time.time() // 86400)
    additions = {
        "passwd": f"{USER}:x:{uid}:{uid}:AutoBot remediation:{lay.home}:/bin/bash\n",
        "group": f"{USER}:x:{uid}:\n",
        "shadow": f"{USER}:*:{days}:0:99999:7:::\n",
    }
    for name, line in additions.items():
        real, copy = Path("/etc") / name, lay.etc / name
        shutil.copy2(real, copy)
        st = real.stat()
        os.chown(copy, st.st_uid, st.st_gid)
        text = copy.read_text()
        copy.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line)
    sudoers = lay.etc / "sudoers.d" / "autobot-redis"
    sudoers.write_text(SUDOERS)
    sudoers.chmod(0o440)
    lay.authorized_keys.write_text(lay.key_file.with_suffix(".pub").read_text())
    lay.authorized_keys.chmod(0o600)
    os.chown(lay.authorized_keys, uid, uid)


def write_fenced(lay: Layout) -> None:
    """The fenced wrapper (verbatim), its sudoers line beside the runbook's, its state dir."""
    wrapper = lay.bin / "redis-autoheal-fenced"
    shutil.copyfile(FENCED_SOURCE, wrapper)
    wrapper.chmod(0o755)
    sudoers = lay.etc / "sudoers.d" / "autobot-redis"
    sudoers.write_text(sudoers.read_text() + SUDOERS_FENCED)
    lay.fenced_state.mkdir(mode=0o700, exist_ok=True)


def write_sshd(lay: Layout) -> None:
    lay.sshd_config.write_text(
        "# redis-autoheal test host sshd (VM3 in a box)\n"
        f"Port {SSH_PORT}\n"
        "ListenAddress 0.0.0.0\n"
        "AddressFamily inet\n"
        f"PidFile {lay.sshd_pid}\n"
        "UsePAM no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "AuthenticationMethods publickey\n"
        "PermitRootLogin no\n"
        f"AllowUsers {USER}\n"
        f"AuthorizedKeysFile {lay.authorized_keys}\n"
        "StrictModes yes\n"
        "MaxSessions 10\n"
        "MaxStartups 10:30:100\n"
        "LogLevel INFO\n"
        "UseDNS no\n"
        "PrintMotd no\n"
        "PrintLastLog no\n"
        "X11Forwarding no\n"
        "AllowTcpForwarding no\n"
        "AllowAgentForwarding no\n"
        "PermitTunnel no\n"
    )
    lay.sshd_config.chmod(0o600)


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    """A known_hosts line; OpenSSH and asyncssh want '[addr]:port' only when port != 22."""
    host = address if port == SSH_PORT else f"[{address}]:{port}"
    key_type, key = public_key.split()[:2]
    return f"{host} {key_type} {key}\n"


def write_known_hosts(lay: Layout, address: str) -> None:
    public = lay.host_key.with_suffix(".pub").read_text()
    lay.known_hosts.write_text(known_hosts_line(address, SSH_PORT, public))
    lay.known_hosts.chmod(0o644)


def write_redis_conf(lay: Layout, opts: HostOptions) -> None:
    save = RUNBOOK_SAVE if opts.rdb else ('save ""',)
    lines = [
        "# redis-autoheal test host redis.conf (VM3 in a box; runbook Appendix B where it fits)",
        "bind 0.0.0.0",
        f"port {REDIS_PORT}",
        f"protected-mode {'yes' if opts.password else 'no'}",
        "daemonize no",
        "supervised no",
        f"pidfile {lay.redis / 'redis-server.pid'}",
        'logfile ""',
        "loglevel notice",
        f"dir {lay.redis / 'data'}",
        "dbfilename dump.rdb",
        *save,
        "appendonly no",
        "maxmemory 4gb",
        "maxmemory-policy allkeys-lru",
        "maxclients 10000",
    ]
    if opts.password:
        lines.append(f"requirepass {opts.password}")
    lines.extend(opts.redis_config)
    lay.redis_conf.write_text("\n".join(lines) + "\n")
    lay.redis_conf.chmod(0o600)


def render_script(module_file: str, constants: dict[str, str]) -> str:
    """A module's source as an executable script with its BAKED_* constants filled in."""
    source = Path(module_file).read_text()
    for name, value in constants.items():
        placeholder = f'{name} = ""\n'
        if placeholder not in source:
            raise RuntimeError(f"{module_file} has no placeholder {name}")
        source = source.replace(placeholder, f"{name} = {value!r}\n", 1)
    return f"#!{PYTHON}\n{source}"


def write_scripts(lay: Layout) -> None:
    """systemctl and journalctl (0755, for everyone in the host), unitctl and hostinit (root)."""
    for tool, mode in (("systemctl", 0o755), ("journalctl", 0o755), ("unitctl", 0o700)):
        consts = {"BAKED_STATE_DIR": str(lay.state), "BAKED_TOOL": tool}
        path = lay.bin / tool
        path.write_text(render_script(_standin.__file__, consts))
        path.chmod(mode)
    init = lay.bin / "hostinit"
    init.write_text(render_script(_hostinit.__file__, {"BAKED_CONFIG": str(lay.init_config)}))
    init.chmod(0o700)


def write_unit(lay: Layout, opts: HostOptions) -> None:
    """unit.json (the unit file the stand-ins model) and an empty faults.json."""
    config = _standin.UnitConfig(
        unit=UNIT,
        description="Advanced key-value store",
        fragment_path=f"/lib/systemd/system/{UNIT}.service",
        documentation=["http://redis.io/documentation,", "man:redis-server(1)"],
        aliases=["redis"],
        hostname=opts.hostname,
        exec_start=[REDIS_SERVER, str(lay.redis_conf), "--daemonize", "no"],
        fail_args=["--testhost-start-fails", "yes"],
        redis_port=REDIS_PORT,
        redis_password=opts.password,
        redis_log_copy=str(lay.redis / "redis-server.log"),
        timeout_start=opts.timeout_start,
        timeout_stop=opts.timeout_stop,
        start_limit_interval=opts.start_limit_interval,
        start_limit_burst=opts.start_limit_burst,
    )
    paths = _standin.Paths(lay.state)
    paths.config.write_text(json.dumps(dataclasses.asdict(config), indent=1))
    write_faults(lay, _standin.Faults())
    paths.config.chmod(0o644)


def write_faults(lay: Layout, faults: _standin.Faults) -> None:
    path = _standin.Paths(lay.state).faults
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(faults)))
    tmp.chmod(0o644)
    tmp.replace(path)


def write_init_config(lay: Layout, opts: HostOptions) -> None:
    """What hostinit mounts and starts."""
    binds = [
        (lay.etc / "passwd", "/etc/passwd"),
        (lay.etc / "group", "/etc/group"),
        (lay.etc / "shadow", "/etc/shadow"),
        (lay.etc / "sudoers.d", "/etc/sudoers.d"),
        (lay.bin / "systemctl", "/usr/bin/systemctl"),
        (lay.bin / "journalctl", "/usr/bin/journalctl"),
    ]
    if opts.fenced:
        binds += [(lay.bin / "redis-autoheal-fenced", FENCED), (lay.fenced_state, FENCED_STATE)]
    for name in ("wtmp", "btmp", "lastlog"):  # sshd must not write the real login records
        if (Path("/var/log") / name).exists():
            (lay.varlog / name).touch(mode=0o600)
            binds.append((lay.varlog / name, f"/var/log/{name}"))
    sshd = [
        SSHD,
        "-D",
        "-f",
        str(lay.sshd_config),
        "-h",
        str(lay.host_key),
        "-E",
        str(lay.sshd_log),
    ]
    boot = [PYTHON, str(lay.bin / "unitctl"), "boot-start"] if opts.redis_running else None
    config = {
        "binds": [(str(src), dst) for src, dst in binds],
        "run_dirs": ["/run/sshd"],
        "overlays": "/run/.testhost-overlays",  # on the host's private /run tmpfs
        "sshd": sshd,
        "boot": boot,
        "socket": str(lay.init_socket),
        "ready": str(lay.init_ready),
        "log": str(lay.init_log),
    }
    lay.init_config.write_text(json.dumps(config, indent=1))


def populate(lay: Layout, opts: HostOptions, net: Net, uid: int) -> None:
    """Write the whole work directory for a host."""
    make_dirs(lay, uid)
    generate_keys(lay)
    write_accounts(lay, uid)
    if opts.fenced:
        write_fenced(lay)
    write_sshd(lay)
    write_known_hosts(lay, net.address)
    write_redis_conf(lay, opts)
    write_scripts(lay)
    write_unit(lay, opts)
    write_init_config(lay, opts)
