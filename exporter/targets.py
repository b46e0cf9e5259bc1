"""The targets one /probe may name: configured ones, and `redis://` URLs the allowlist admits.

    target=NAME                    a target of the config file
    target=redis://HOST:PORT       a Redis that service discovery found (file_sd, consul_sd,
    target=rediss://HOST:PORT        kubernetes_sd), probed with no systemd layer

A URL is admitted only when `exporter.allowed_targets` says so: an address inside one of its
`networks`, or a host name matching one of its `hosts` patterns whose every address lies in
those networks. The name is resolved once per request and a plain connection goes to the
address that was checked, so a name that changes its answer in between cannot send the
exporter elsewhere; a TLS connection goes by name, since its certificate must match the name.
Credentials never come from the URL: the first `credentials` entry whose `pattern` matches
`host:port` gives the user name, password (from a file) and TLS files. Anything else is a
`BadTarget`, answered 400 with the reason: the exporter is never an open proxy.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from exporter.probe import TargetProber
from redis_autoheal.config import RedisEndpoint, Target
from redis_autoheal.links import ConnectionLimits, RedisHosts

if TYPE_CHECKING:
    from redis_autoheal.config import AllowedTargets, Config, TargetCredentials
    from redis_autoheal.sshpool import SshPool

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT_SECONDS = 5.0
URL_PROBERS_MAX = 4096  # URL targets kept with their connections; the least used go first
SHOWN = 64  # how much of a bad value a 400 repeats


class StaleDirectory(Exception):
    """A reload replaced this directory while a request was resolving a name: ask the new one."""


class BadTarget(Exception):
    """A `target=` that cannot be probed: `reason` is a label value, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class TargetUrl:
    """A parsed `redis://HOST:PORT` target."""

    text: str
    tls: bool
    host: str  # lower case, IPv6 without brackets
    port: int

    @property
    def host_port(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_url(text: str) -> TargetUrl:
    """Parse a target URL; BadTarget unless it is exactly `redis[s]://HOST[:PORT][/]`."""
    shown = repr(text[:SHOWN])
    try:
        parts = urlsplit(text)
        port = parts.port or 6379
    except ValueError as e:
        raise BadTarget("bad_url", f"target {shown} is not a valid URL: {e}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise BadTarget("bad_url", f"target {shown}: use redis:// or rediss://")
    if parts.username is not None or parts.password is not None:
        raise BadTarget(  # the message leaves the URL out: it would repeat the password
            "bad_url",
            "the target URL carries credentials: they are refused in a URL; put them in a "
            "file named by exporter.allowed_targets.credentials",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BadTarget("bad_url", f"target {shown}: only redis[s]://HOST:PORT is accepted")
    if not parts.hostname:
        raise BadTarget("bad_url", f"target {shown} has no host")
    return TargetUrl(text, parts.scheme == "rediss", parts.hostname.lower(), port)


class AllowList:
    """exporter.allowed_targets, ready to check a URL's host and addresses."""

    def __init__(self, allowed: AllowedTargets) -> None:
        self.networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed.networks
        )
        self.hosts = tuple(h.lower() for h in allowed.hosts)
        self.credentials = allowed.credentials

    def __bool__(self) -> bool:
        return bool(self.networks)

    def _inside(self, address: IpAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    async def admit(self, url: TargetUrl) -> str:
        """The checked address to connect to; BadTarget naming why if the URL is refused."""
        if not self:
            raise BadTarget(
                "not_allowed",
                f"target {url.text[:SHOWN]!r} refused: exporter.allowed_targets is empty, "
                "so only configured target names can be probed",
            )
        try:
            literal: IpAddress | None = ipaddress.ip_address(url.host)
        except ValueError:
            literal = None
        if literal is not None:
            if not self._inside(literal):
                raise BadTarget(
                    "not_allowed",
                    f"target {url.host_port} refused: {literal} is outside "
                    "exporter.allowed_targets.networks",
                )
            return str(literal)
        if not any(fnmatch.fnmatchcase(url.host, pattern) for pattern in self.hosts):
            raise BadTarget(
                "not_allowed",
                f"target {url.host_port[:SHOWN]} refused: the host matches no pattern of "
                "exporter.allowed_targets.hosts",
            )
        addresses = await _resolve(url)
        outside = [a for a in addresses if not self._inside(a)]
        if outside:
            raise BadTarget(
                "not_allowed",
                f"target {url.host_port} refused: {url.host} resolves to {outside[0]}, "
                "outside exporter.allowed_targets.networks",
            )
        return str(addresses[0])

    def credentials_for(self, url: TargetUrl) -> TargetCredentials | None:
        for c in self.credentials:
            if fnmatch.fnmatchcase(url.host_port, c.pattern.lower()):
                return c
        return None


async def _resolve(url: TargetUrl) -> list[IpAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as e:
        raise BadTarget(
            "unresolvable", f"target {url.host_port} refused: {url.host} does not resolve ({e})"
        ) from None
    addresses: list[IpAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BadTarget("unresolvable", f"target {url.host_port} refused: no address")
    return addresses


class TargetDirectory:
    """The probers of one config: a kept one per configured target, URL targets on demand.

    A config reload builds a new directory; probers whose target did not change move over
    with their connections, the others are retired: closed once no probe uses them.
    """

    def __init__(self, config: Config, ssh: SshPool, old: TargetDirectory | None = None) -> None:
        self.config = config
        self.ssh = ssh
        self.allow = AllowList(config.exporter.allowed_targets)
        self.histograms = config.exporter.latency_histograms
        limits = config.exporter.redis_connections
        self.hosts: RedisHosts = RedisHosts() if old is None else old.hosts  # caps span reloads
        self.hosts.limit(ConnectionLimits(limits.max_per_host, limits.idle_close_seconds))
        kept = {} if old is None else old.probers
        self.probers: dict[str, TargetProber] = {}
        for t in config.targets:
            prober = kept.get(t.name)
            if prober is None or not prober.same_as(t, config.health_check, self.histograms):
                ssh_host = None if t.ssh is None else ssh.host(t.ssh)
                prober = TargetProber(
                    t,
                    config.health_check,
                    ssh_host,
                    latency_histograms=self.histograms,
                    hosts=self.hosts,
                )
            self.probers[t.name] = prober
        self._urls: OrderedDict[tuple[str, str], TargetProber] = OrderedDict()
        self._retired = False

    async def prober(self, target: str) -> TargetProber:
        """The prober for a `target=` value; BadTarget if it names nothing we may probe."""
        prober = self.probers.get(target)
        if prober is not None:
            return prober
        if "://" not in target:
            raise BadTarget(
                "unknown_target",
                f"unknown target {target[:SHOWN]!r}: not in the config file",
            )
        url = parse_url(target)
        address = await self.allow.admit(url)
        if self._retired:  # reloaded while the name resolved: this directory's probers closed
            raise StaleDirectory
        key = (url.text, address)
        prober = self._urls.get(key)
        if prober is None:
            prober = self._url_prober(url, address)
            self._urls[key] = prober
            if len(self._urls) > URL_PROBERS_MAX:
                _, oldest = self._urls.popitem(last=False)
                await oldest.retire()
        else:
            self._urls.move_to_end(key)
        return prober

    def _url_prober(self, url: TargetUrl, address: str) -> TargetProber:
        c = self.allow.credentials_for(url)
        endpoint = RedisEndpoint(
            host=url.host if url.tls else address,
            port=url.port,
            username=None if c is None else c.username,
            password=None if c is None else c.password,
            tls=url.tls,
            tls_ca_file=None if c is None else c.tls_ca_file,
            tls_cert_file=None if c is None else c.tls_cert_file,
            tls_key_file=None if c is None else c.tls_key_file,
        )
        target = Target(name=url.host_port, redis=endpoint, ssh=None)
        return TargetProber(
            target,
            self.config.health_check,
            None,
            latency_histograms=self.histograms,
            hosts=self.hosts,
        )

    async def retire(self, successor: TargetDirectory | None = None) -> None:
        """Retire every prober the successor does not keep (all of them without one)."""
        self._retired = True
        kept = set() if successor is None else {id(p) for p in successor.probers.values()}
        probers = [p for p in self.probers.values() if id(p) not in kept]
        await asyncio.gather(*(p.retire() for p in [*probers, *self._urls.values()]))
