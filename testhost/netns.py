"""The test host's network: its own namespace reached over a veth pair in 198.18.0.0/15.

Host index N gets namespace ``ahN``, veths ``ahN-v`` (root side, 198.18.N.1/24) and ``ahN-h``
(host side, 198.18.N.2/24). Only RFC 2544 test addresses are used and the namespace has no
default route, so nothing here can reach anything but the root namespace's end of its own link.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

NETNS_DIR = Path("/run/netns")
BOGUS_MAC = "02:00:00:00:de:ad"  # locally administered; no interface has it
MAX_INDEX = 254


class NetError(RuntimeError):
    """An ip(8) command failed."""


@dataclasses.dataclass(frozen=True)
class Net:
    """The names and addresses derived from a host index."""

    index: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= MAX_INDEX:
            raise ValueError(f"host index {self.index} outside 1..{MAX_INDEX}")

    @property
    def name(self) -> str:
        return f"ah{self.index}"

    @property
    def ns_path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def veth_root(self) -> str:
        return f"ah{self.index}-v"

    @property
    def veth_host(self) -> str:
        return f"ah{self.index}-h"

    @property
    def root_address(self) -> str:
        return f"198.18.{self.index}.1"

    @property
    def address(self) -> str:
        return f"198.18.{self.index}.2"

    def exists(self) -> bool:
        """Whether any of this index's namespace or root-side veth is present."""
        return self.ns_path.exists() or Path(f"/sys/class/net/{self.veth_root}").exists()


def ip(*args: str, batch: str | None = None, check: bool = True) -> str:
    """Run ip(8); with batch, feed it commands on stdin (-batch -)."""
    argv = ["ip", *args] + (["-batch", "-"] if batch is not None else [])
    done = subprocess.run(argv, input=batch, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def create(net: Net) -> None:
    """Create the namespace and the veth pair, addresses and links up (no IPv6, no routes out)."""
    ip("netns", "add", net.name)
    ip(
        batch=(
            f"link add {net.veth_root} type veth peer name {net.veth_host} netns {net.name}\n"
            f"link set dev {net.veth_root} addrgenmode none\n"
            f"addr add {net.root_address}/24 dev {net.veth_root}\n"
            f"link set dev {net.veth_root} up\n"
        )
    )
    ip(
        "-n",
        net.name,
        batch=(
            f"link set dev {net.veth_host} addrgenmode none\n"
            f"addr add {net.address}/24 dev {net.veth_host}\n"
            f"link set dev {net.veth_host} up\n"
            "link set dev lo up\n"
        ),
    )


def destroy(net: Net) -> None:
    """Delete the veth pair and the namespace (either may already be gone)."""
    if Path(f"/sys/class/net/{net.veth_root}").exists():
        ip("link", "del", net.veth_root, check=False)
    if net.ns_path.exists():
        ip("netns", "del", net.name)


def link_down(net: Net) -> None:
    """Take the host-side interface down: ARP is never answered, the host is unreachable."""
    ip("-n", net.name, "link", "set", "dev", net.veth_host, "down")


def link_up(net: Net) -> None:
    """Bring the host-side interface back and forget the root side's failed ARP entries."""
    ip("-n", net.name, "link", "set", "dev", net.veth_host, "up")
    ip("neigh", "flush", "dev", net.veth_root, check=False)


def blackhole(net: Net) -> None:
    """Send the host's packets to a MAC nobody has: they vanish, so connects time out."""
    ip(
        "neigh",
        "replace",
        net.address,
        "lladdr",
        BOGUS_MAC,
        "dev",
        net.veth_root,
        "nud",
        "permanent",
    )


def unblackhole(net: Net) -> None:
    """Remove the bogus neighbour entry; ARP resolves the host again."""
    ip("neigh", "del", net.address, "dev", net.veth_root, check=False)
