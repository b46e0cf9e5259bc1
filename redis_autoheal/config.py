"""The one config file of both services: a typed, validated, immutable object built once.

`load_config(path)` parses the YAML, rejects unknown and duplicate keys, fills in the runbook's
defaults, expands `~`, resolves relative paths against the config file's directory, checks
every SSH key (present, mode 600 or stricter) and known_hosts file, and reads the Redis
password files. Secrets only the remediator needs (webhook and user tokens) are read when it
starts, by `read_remediator_secrets`, so an exporter-only host needs no remediator files.
A password or token file is held to the SSH key's rule: readable by its owner only.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import yaml

from redis_autoheal import thresholds
from redis_autoheal.commands import Unit, validate_unit, validate_wrapper
from redis_autoheal.errors import CommandRejected, ConfigError
from redis_autoheal.rulefile import StateAlert, load_state_alerts
from redis_autoheal.schema import build, field, in_range, internal

# Short enough that an alert carrying it stays within the webhook's size budget (alerts/).
TARGET_NAME = re.compile(r"[a-z0-9_-]{1,63}")
Role = Literal["admin", "operator"]


def _target_name(value: str) -> str | None:
    if not TARGET_NAME.fullmatch(value):
        return f"must match [a-z0-9_-]+ and be at most 63 characters, got {value!r}"
    return None


def _unit_name(value: str) -> str | None:
    try:
        validate_unit(value)
    except CommandRejected as e:
        return str(e)
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """Split `HOST:PORT` or `[V6]:PORT` into host and port; raise ValueError if malformed."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"must be HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif ":" in host:
        raise ValueError(f"an IPv6 address must be in brackets, [::1]:PORT, got {value!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1-65535, got {port}")
    return host, port


def _wrapper(value: str) -> str | None:
    try:
        validate_wrapper(value)
    except CommandRejected as e:
        return str(e)
    return None


def _listen(value: str) -> str | None:
    try:
        parse_listen(value)
    except ValueError as e:
        return str(e)
    return None


def _network(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"must be an address or network like 127.0.0.0/8, got {value!r}"
    return None


_port = in_range(1, 65535)
_positive = in_range(0.001)
_non_negative = in_range(0)


@dataclass(frozen=True, slots=True)  # one per target: no __dict__
class RedisEndpoint:
    """How to reach one Redis server."""

    host: str = "127.0.0.1"
    port: int = field(6379, check=_port)
    username: str | None = None  # an ACL user; None means the default user
    password_file: Path | None = None
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Filled by load_config from password_file; never written to the file or to logs.
    password: str | None = internal(None, refuse="put the password in a file and set password_file")

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SshEndpoint:
    """How to reach the host that runs the unit, as the runbook's `autobot` user."""

    host: str = "127.0.0.1"
    port: int = field(22, check=_port)
    user: str = "autobot"
    key_file: Path = Path("~/.ssh/autobot_key")
    known_hosts: Path = Path("~/.ssh/known_hosts")
    connect_timeout_seconds: float = field(5.0, check=_positive)
    command_timeout_seconds: float = field(10.0, check=_positive)  # is-active, status, logs
    control_timeout_seconds: float = field(90.0, check=_positive)  # start/stop/restart/reload
    keepalive_seconds: float = field(15.0, check=_positive)
    max_sessions: int = field(8, check=in_range(1, 64))  # keep below sshd's MaxSessions (10)


@dataclass(frozen=True, slots=True)
class Target:
    """One Redis service: its server, the host that runs it, and its systemd unit."""

    name: str = field(check=_target_name)
    redis: RedisEndpoint = field(default_factory=RedisEndpoint)
    ssh: SshEndpoint | None = None
    unit: str = field("redis-server", check=_unit_name)

    @property
    def systemd_unit(self) -> Unit:
        return Unit(self.unit)


def _whole_seconds(value: float) -> str | None:
    if value != int(value) or value < 3:
        return f"must be a whole number of seconds, at least 3, got {value:g}"
    return None


@dataclass(frozen=True)
class HealthCheck:
    """The runbook's three health layers: how often Redis is PINGed, how many failed PINGs in
    a row start a recovery, and how long each layer's probe may take.

    The first two are settings of Prometheus and its rules, which `python -m alerts.generator
    --config FILE --out DIR` writes from this file; their defaults are alerts/thresholds.yml's.
    """

    interval_seconds: float = field(
        default_factory=lambda: float(thresholds.shipped().intervals["connectivity"]),
        check=_whole_seconds,
    )
    failure_threshold: int = field(
        default_factory=lambda: thresholds.shipped()["RedisDown"].count("failed_pings"),
        check=in_range(1, 100),
    )
    ping_timeout_seconds: float = field(5.0, check=_positive)
    systemd_timeout_seconds: float = field(10.0, check=_positive)
    performance_timeout_seconds: float = field(15.0, check=_positive)


@dataclass(frozen=True)
class AutoRecovery:
    """Tiered recovery: reload -> start -> restart, verified, bounded."""

    enabled: bool = True
    max_attempts: int = field(3, check=in_range(1, 10))
    retry_delay_seconds: float = field(10.0, check=_non_negative)
    stable_seconds: float = field(60.0, check=_non_negative)
    transition_timeout_seconds: float = field(30.0, check=_non_negative)


@dataclass(frozen=True)
class CircuitBreaker:
    """Opens after `max_recoveries` recoveries within `window_seconds`; a person resets it."""

    max_recoveries: int = field(3, check=in_range(1, 100))
    window_seconds: float = field(300.0, check=_positive)


@dataclass(frozen=True)
class Permissions:
    """Which roles may run each manual operation."""

    start: tuple[Role, ...] = ("admin", "operator")
    stop: tuple[Role, ...] = ("admin",)
    restart: tuple[Role, ...] = ("admin", "operator")
    reload: tuple[Role, ...] = ("admin", "operator")
    reset_circuit_breaker: tuple[Role, ...] = ("admin",)


@dataclass(frozen=True)
class Audit:
    """The JSON-lines audit log and its size-based rotation."""

    path: Path = Path("logs/audit/redis_service_management.log")
    max_bytes: int = field(104857600, check=in_range(1024))
    backup_count: int = field(10, check=in_range(0, 1000))
    compress: Literal["gzip", "none"] = "gzip"


def _host_pattern(value: str) -> str | None:
    if not value or any(c.isspace() or c in "/@" for c in value):
        return f"must be a host name pattern like *.redis.internal, got {value!r}"
    return None


@dataclass(frozen=True)
class TargetCredentials:
    """How to log in to the URL targets whose `host:port` matches `pattern` (shell-style)."""

    pattern: str = field(check=_host_pattern)
    username: str | None = None
    password_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Filled by load_config from password_file.
    password: str | None = internal(None, refuse="put the password in a file and set password_file")


@dataclass(frozen=True)
class AllowedTargets:
    """Which `target=redis://HOST:PORT` (or rediss://) the exporter may probe.

    An address must lie in `networks`; a host name must match one of `hosts` and resolve
    only to addresses in `networks`. Empty: only the configured targets can be probed.
    """

    networks: tuple[str, ...] = field(
        (), check=lambda v: next(filter(None, map(_network, v)), None)
    )
    hosts: tuple[str, ...] = field(
        (), check=lambda v: next(filter(None, map(_host_pattern, v)), None)
    )
    credentials: tuple[TargetCredentials, ...] = ()


def _alertmanager_urls(value: tuple[str, ...]) -> str | None:
    if not value:
        return "must list at least one Alertmanager, like http://127.0.0.1:9093"
    for url in value:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            return f"must be http(s)://HOST:PORT[/PATH] URLs, got {url!r}"
    return None


@dataclass(frozen=True)
class UnitFollow:
    """Follow each target's unit over SSH; push its state alerts to Alertmanager at once."""

    # Every Alertmanager Prometheus sends to (alerting.alertmanagers), each gets each alert.
    alertmanager_urls: tuple[str, ...] = field(check=_alertmanager_urls)
    # The rules file Prometheus loads: the pushed alerts are its RedisServiceInactive/Failed.
    rules_file: Path = field()
    # While an alert fires it is sent again this often, valid for 4 times as long (Prometheus'
    # --rules.alert.resend-delay, 1m by default).
    resend_seconds: float = field(60.0, check=in_range(1, 3600))
    # A lost stream is reopened after 1 s, doubling up to this.
    reconnect_max_seconds: float = field(30.0, check=in_range(1, 3600))
    push_timeout_seconds: float = field(5.0, check=_positive)
    # Loaded from rules_file by load_config, by unit state.
    alerts: dict[str, StateAlert] = internal(None, refuse="it is read from rules_file")


@dataclass(frozen=True)
class RedisConnections:
    """What the exporter costs each Redis: one connection per target, kept while it is used."""

    max_per_host: int = field(1000, check=in_range(1, 1_000_000))  # open at once to one host
    idle_close_seconds: float = field(300.0, check=in_range(1, 86400))


@dataclass(frozen=True)
class ExporterSettings:
    """Where the exporter listens, and which targets besides the configured ones it probes."""

    listen: str = field("127.0.0.1:9121", check=_listen)
    allowed_targets: AllowedTargets = field(default_factory=AllowedTargets)
    redis_connections: RedisConnections = field(default_factory=RedisConnections)
    # redis_commands_latencies_usec{cmd} from LATENCY HISTOGRAM: about 6 series per command.
    latency_histograms: bool = False
    # Absent: unit states are seen by Prometheus' systemd scrapes only.
    follow: UnitFollow | None = None


@dataclass(frozen=True)
class RemediatorSettings:
    """Where the remediator listens and keeps its state."""

    listen: str = field("127.0.0.1:9122", check=_listen)
    webhook_token_file: Path = Path("/etc/redis-autoheal/webhook.token")
    dry_run: bool = False
    state_dir: Path = Path("/var/lib/redis-autoheal")
    max_body_bytes: int = field(1048576, check=in_range(1024, 64 * 1048576))
    allowed_networks: tuple[str, ...] = field((), check=lambda v: next(map(_network, v), None))
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # On SIGTERM/SIGINT: how long a step already sent to a host may take to finish and verify.
    shutdown_grace_seconds: float = field(30.0, check=in_range(0, 600))


def _endpoint(value: str) -> str | None:
    if not re.fullmatch(r"https?://[^/\s]+", value):
        return f"must be a URL like https://10.0.0.1:2379, got {value!r}"
    return None


@dataclass(frozen=True)
class EtcdSettings:
    """The etcd cluster remediator replicas share (`coordination.backend: etcd`)."""

    endpoints: tuple[str, ...] = field(
        ("http://127.0.0.1:2379",),
        check=lambda v: next(filter(None, map(_endpoint, v)), None) if v else "must list one",
    )
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # How long a replica that stopped answering (paused, cut off) holds its claims.
    lease_ttl_seconds: int = field(10, check=in_range(2, 300))
    # The fenced wrapper's path on the Redis hosts: each recovery step then runs as
    # `sudo -n WRAPPER FENCE ACTION UNIT`. Unset: the runbook's `sudo -n systemctl`.
    fenced_command: str | None = field(None, check=_wrapper)


@dataclass(frozen=True)
class CoordinationSettings:
    """Whether this remediator is alone (`local`) or one of replicas acting as one (`etcd`)."""

    backend: Literal["local", "etcd"] = "local"
    etcd: EtcdSettings = field(default_factory=EtcdSettings)


@dataclass(frozen=True)
class User:
    """A person (or tool) allowed to use the operator API."""

    id: str
    email: str
    role: Role
    token_file: Path


@dataclass(frozen=True)
class Config:
    """Everything both services need, validated."""

    targets: tuple[Target, ...] = field(check=lambda v: None if v else "must list at least one")
    health_check: HealthCheck = field(default_factory=HealthCheck)
    auto_recovery: AutoRecovery = field(default_factory=AutoRecovery)
    circuit_breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    permissions: Permissions = field(default_factory=Permissions)
    audit: Audit = field(default_factory=Audit)
    exporter: ExporterSettings = field(default_factory=ExporterSettings)
    remediator: RemediatorSettings = field(default_factory=RemediatorSettings)
    coordination: CoordinationSettings = field(default_factory=CoordinationSettings)
    users: tuple[User, ...] = ()
    source: Path = internal(Path("config.yml"), refuse="it is set to the file's own path")

    def target(self, name: str) -> Target | None:
        """The configured target called `name`, or None."""
        for t in self.targets:
            if t.name == name:
                return t
        return None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: with plain YAML the last one silently wins."""


def _mapping_without_duplicates(
    loader: yaml.SafeLoader | yaml.CSafeLoader, node: yaml.MappingNode
) -> dict[object, object]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise ConfigError(
                "", f"duplicate key {key!r} at line {mark.line + 1} column {mark.column + 1}"
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)
_FAST_LOADER: type[yaml.SafeLoader | yaml.CSafeLoader] = _StrictLoader
if yaml.__with_libyaml__:  # PyYAML's wheels and Debian's python3-yaml have it

    class _StrictCLoader(yaml.CSafeLoader):
        """The same on libyaml's parser: a quarter of the time, and two thirds of the memory at
        its peak, which the process keeps (10 000 targets: 42 MiB instead of 61)."""

    _StrictCLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
    )
    _FAST_LOADER = _StrictCLoader


def parse_yaml(text: str, source: str) -> object:
    """Parse YAML text, turning syntax errors into a one-line ConfigError.

    libyaml parses when PyYAML has it; text it refuses is parsed again by PyYAML's own
    parser, whose messages are the ones shown."""
    try:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 -- a SafeLoader subclass
        except yaml.YAMLError:
            return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{source}: invalid YAML{where}: {e.problem}") from None
    except ConfigError as e:
        raise ConfigError("", f"{source}: {e.problem}") from None


def _owner_only(path: Path, mode: int, key: str, what: str) -> None:
    """Refuse a secret that is not a regular file or that group or others may read or write."""
    if not stat.S_ISREG(mode):
        raise ConfigError(key, f"{path} is not a regular file")
    if mode & 0o077:
        raise ConfigError(
            key,
            f"{path} has mode {stat.S_IMODE(mode):03o}: {what} must be readable by its "
            f"owner only (chmod 600 {path})",
        )


def read_secret(path: Path, key: str, what: str = "a secret file") -> str:
    """Read a secret (password, token) from a file that only its owner may read.

    `what` names the kind of file in the message ("a token file"). The mode is taken from the
    open descriptor, so the file checked is the file read; stripped of surrounding whitespace.
    """
    try:
        # O_NONBLOCK: a FIFO put in a secret's place is refused, not waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
    try:
        _owner_only(path, os.fstat(fd).st_mode, key, what)
        with open(fd, "rb", closefd=False) as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(key, f"{path} is empty")
    return value


def _check_private_file(path: Path, key: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
    _owner_only(path, mode, key, "an SSH key")


def _check_readable(path: Path, key: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None


def _finish_target(target: Target, key: str) -> Target:
    ssh = target.ssh
    if ssh is not None:
        _check_private_file(ssh.key_file, f"{key}.ssh.key_file")
        _check_readable(ssh.known_hosts, f"{key}.ssh.known_hosts")
    r = target.redis
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(r, name)
        if path is not None:
            if not r.tls:
                raise ConfigError(f"{key}.redis.{name}", "is set but redis.tls is false")
            _check_readable(path, f"{key}.redis.{name}")
    if (r.tls_cert_file is None) != (r.tls_key_file is None):
        raise ConfigError(
            f"{key}.redis.tls_cert_file", "tls_cert_file and tls_key_file go together"
        )
    if r.password_file is None:
        return target
    password = read_secret(r.password_file, f"{key}.redis.password_file", "a password file")
    redis = replace(r, password=password)
    return Target(name=target.name, redis=redis, ssh=ssh, unit=target.unit)


def _finish_credentials(c: TargetCredentials, key: str) -> TargetCredentials:
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(c, name)
        if path is not None:
            _check_readable(path, f"{key}.{name}")
    if (c.tls_cert_file is None) != (c.tls_key_file is None):
        raise ConfigError(f"{key}.tls_cert_file", "tls_cert_file and tls_key_file go together")
    if c.password_file is None:
        return c
    password = read_secret(c.password_file, f"{key}.password_file", "a password file")
    return TargetCredentials(**{**c.__dict__, "password": password})


def _finish_exporter(e: ExporterSettings) -> ExporterSettings:
    allowed = e.allowed_targets
    key = "exporter.allowed_targets"
    if allowed.hosts and not allowed.networks:
        raise ConfigError(
            f"{key}.hosts",
            "needs networks too: a host name is probed only if it resolves inside them",
        )
    credentials = tuple(
        _finish_credentials(c, f"{key}.credentials[{i}]") for i, c in enumerate(allowed.credentials)
    )
    allowed = AllowedTargets(allowed.networks, allowed.hosts, credentials)
    follow = e.follow
    if follow is not None:
        alerts = load_state_alerts(follow.rules_file, "exporter.follow.rules_file")
        follow = UnitFollow(**{**follow.__dict__, "alerts": alerts})
    return ExporterSettings(**{**e.__dict__, "allowed_targets": allowed, "follow": follow})


def _check_etcd(e: EtcdSettings, backend: str) -> None:
    key = "coordination.etcd"
    if e.fenced_command is not None and backend != "etcd":
        raise ConfigError(
            f"{key}.fenced_command", "needs coordination.backend: etcd (a fence is an etcd claim)"
        )
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(e, name)
        if path is not None:
            _check_readable(path, f"{key}.{name}")
    if (e.tls_cert_file is None) != (e.tls_key_file is None):
        raise ConfigError(f"{key}.tls_cert_file", "tls_cert_file and tls_key_file go together")


def _check_unique(values: list[str], key: str, what: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(f"{key}[{i}]", f"duplicate {what} {v!r}")
        seen.add(v)


def config_from_data(data: object, source: Path) -> Config:
    """Validate parsed YAML into a Config; `source` names the file for paths and messages."""
    config = build(Config, data, "", source.parent)
    _check_unique([t.name for t in config.targets], "targets", "target name")
    _check_unique([u.id for u in config.users], "users", "user id")
    targets = tuple(_finish_target(t, f"targets[{i}]") for i, t in enumerate(config.targets))
    r = config.remediator
    if (r.tls_cert_file is None) != (r.tls_key_file is None):
        raise ConfigError("remediator.tls_cert_file", "needs tls_key_file too")
    exporter = _finish_exporter(config.exporter)
    _check_etcd(config.coordination.etcd, config.coordination.backend)
    return Config(**{**config.__dict__, "targets": targets, "exporter": exporter, "source": source})


def _read(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("", f"cannot read config file {path}: {e.strerror}") from None
    data = parse_yaml(text, str(path))
    if data is None:
        raise ConfigError("", f"{path}: empty config file: targets is required")
    return data


def load_config(path: Path | str) -> Config:
    """Load and validate the config file at `path`; raise ConfigError with one line on error."""
    path = Path(path).expanduser()
    return config_from_data(_read(path), path.resolve())


def load_settings(path: Path | str) -> Config:
    """The config file's keys and values, checked, without opening the files it names: for a
    tool that runs where the services' keys and secrets are not (the rules generator)."""
    path = Path(path).expanduser()
    return build(Config, _read(path), "", path.resolve().parent)


def read_remediator_secrets(config: Config) -> tuple[str, dict[str, str]]:
    """The webhook token and each user's API token, keyed by user id.

    Every token must be its holder's own: two users sharing one could not be told apart, and
    a webhook token that is also a user's would let whoever holds Alertmanager's copy use the
    operator API as that user (and the other way round).
    """
    webhook_file = config.remediator.webhook_token_file
    webhook = read_secret(webhook_file, "remediator.webhook_token_file", "a token file")
    tokens = {
        u.id: read_secret(u.token_file, f"users[{i}].token_file", "a token file")
        for i, u in enumerate(config.users)
    }
    # The messages name the files, never the token.
    for j, u in enumerate(config.users):
        for i, other in enumerate(config.users[:j]):
            if tokens[u.id] == tokens[other.id]:
                raise ConfigError(
                    f"users[{j}].token_file",
                    f"{u.token_file} holds the same token as users[{i}].token_file "
                    f"{other.token_file}: each user needs a token of their own",
                )
    for i, u in enumerate(config.users):
        if tokens[u.id] == webhook:
            raise ConfigError(
                "remediator.webhook_token_file",
                f"{webhook_file} holds the same token as users[{i}].token_file {u.token_file}: "
                "the webhook needs a token of its own",
            )
    return webhook, tokens
