"""Fetching each Redis host's SSH host key and deciding, with the user, whether to trust it.

A key is never trusted just because it was presented. It is trusted when the known_hosts that
an earlier `init` wrote already holds it, when a known_hosts file the user names holds it, when
its fingerprint is one the user passed with --accept-host-key, or when the user answers "yes"
at the terminal after seeing its fingerprint. A key that contradicts a file holding other keys
for that host is refused outright: that is what a changed key or an intercepted connection
looks like.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncssh

from redis_autoheal.errors import InitRefused

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

Prompt = Callable[[str], str]


@dataclass(frozen=True)
class Server:
    """One SSH server to fetch a key from; `name` says which targets it serves."""

    name: str
    host: str
    port: int


def fingerprint(key: asyncssh.SSHKey) -> str:
    """As `ssh-keygen -lf` prints it: SHA256:base64."""
    return key.get_fingerprint("sha256")


def known_hosts_line(server: Server, key: asyncssh.SSHKey) -> str:
    """A known_hosts line; `[host]:port` only when the port is not 22, as OpenSSH writes it."""
    host = server.host if server.port == 22 else f"[{server.host}]:{server.port}"
    algorithm, data = key.export_public_key("openssh").decode().split()[:2]
    return f"{host} {algorithm} {data}\n"


def keys_in(path: Path, server: Server) -> list[asyncssh.SSHKey]:
    """The host keys `path` lists for `server` (none if the file is missing)."""
    try:
        known = asyncssh.read_known_hosts(str(path))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise InitRefused(f"cannot read known_hosts file {path}: {e}") from None
    return list(known.match(server.host, server.host, server.port)[0])


async def fetch(
    server: Server, wait_seconds: float, algorithms: Sequence[str] = ()
) -> asyncssh.SSHKey:
    """The host key `server` presents (of one of `algorithms` if given)."""
    where = f"{server.name}: cannot fetch the SSH host key of {server.host}:{server.port}"
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(
                server.host, server.port, config=None, server_host_key_algs=algorithms or ()
            ),
            wait_seconds,
        )
    except TimeoutError:
        raise InitRefused(f"{where}: no answer in {wait_seconds:g}s; nothing was changed") from None
    except (OSError, asyncssh.Error) as e:
        errno = e.errno if isinstance(e, OSError) else None
        reason = os.strerror(errno) if errno else str(e) or type(e).__name__
        raise InitRefused(f"{where}: {reason}; nothing was changed") from None
    if key is None:
        raise InitRefused(f"{where}: it presented none; nothing was changed")
    return key


def _same(key: asyncssh.SSHKey, keys: Sequence[asyncssh.SSHKey]) -> bool:
    return any(k.public_data == key.public_data for k in keys)


@dataclass(frozen=True)
class Trust:
    """Where trust can come from, besides asking."""

    ours: Path  # the known_hosts the config names (an earlier init's)
    theirs: Path | None  # --known-hosts
    fingerprints: frozenset[str]  # --accept-host-key
    replace_ours: bool  # --force: a key differing from ours may be accepted anew


def algorithms_for(server: Server, trust: Trust) -> list[str]:
    """Ask the server for a key of the kind a trusted file already holds, if one does."""
    keys = keys_in(trust.theirs, server) if trust.theirs else []
    keys = keys or keys_in(trust.ours, server)
    return [alg.decode() for k in keys for alg in k.sig_algorithms]


def accept(server: Server, key: asyncssh.SSHKey, trust: Trust, prompt: Prompt | None) -> str:
    """How `key` came to be trusted (for the summary), or raise InitRefused saying why not."""
    shown = f"{key.get_algorithm()} {fingerprint(key)}"
    who = f"{server.name}: the SSH server at {server.host}:{server.port} presents {shown}"
    ours = keys_in(trust.ours, server)
    if _same(key, ours):
        return f"already in {trust.ours}"
    if ours and not trust.replace_ours:
        raise InitRefused(
            f"{who}, which is not the key {trust.ours} holds for it: the host key changed, or "
            "someone is in the way. Check it on the host; --force accepts a new key. "
            "Nothing was changed"
        )
    if trust.theirs is not None:
        theirs = keys_in(trust.theirs, server)
        if _same(key, theirs):
            return f"listed in {trust.theirs}"
        if theirs:
            raise InitRefused(
                f"{who}, which is not the key {trust.theirs} holds for it: refused. "
                "Nothing was changed"
            )
    if {fingerprint(key), fingerprint(key).removeprefix("SHA256:")} & trust.fingerprints:
        return "its fingerprint was given with --accept-host-key"
    if trust.fingerprints or trust.theirs is not None:
        raise InitRefused(
            f"{who}, which is neither in --known-hosts nor given with --accept-host-key: "
            "refused. Nothing was changed"
        )
    if prompt is None:
        raise InitRefused(
            f"{who}; without a terminal to confirm it, compare it with "
            "`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the host and pass "
            f"--accept-host-key {fingerprint(key)} (or --known-hosts FILE). Nothing was changed"
        )
    answer = prompt(
        f"{who}.\nCompare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` run on that "
        "host.\nTrust this key? Type yes to accept: "
    )
    if answer.strip().lower() != "yes":
        raise InitRefused(
            f"{server.name}: host key {fingerprint(key)} not accepted. Nothing was changed"
        )
    return "accepted at the terminal"


def terminal_prompt() -> Prompt | None:
    """Ask on the terminal, or None when stdin is not one (a script must pass a flag)."""
    if not sys.stdin.isatty():
        return None

    def ask(question: str) -> str:
        print(question, end="", file=sys.stderr, flush=True)  # noqa: T201
        return sys.stdin.readline()

    return ask
