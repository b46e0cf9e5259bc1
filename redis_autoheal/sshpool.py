"""The SSH hosts of one process, one per endpoint, made when a target first needs one.

redis_autoheal/ssh.py, and asyncssh with it (about 15 MiB), is loaded with the first host: an
exporter whose targets have no `ssh` section never loads it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis_autoheal.config import SshEndpoint
    from redis_autoheal.ssh import SshHost


class SshPool:
    """The SshHost of each distinct endpoint: targets on one host share its connections."""

    def __init__(self) -> None:
        self._hosts: dict[tuple[str, int, str, str, str], SshHost] = {}

    def host(self, endpoint: SshEndpoint) -> SshHost:
        key = (
            endpoint.host,
            endpoint.port,
            endpoint.user,
            str(endpoint.key_file),
            str(endpoint.known_hosts),
        )
        host = self._hosts.get(key)
        if host is None:
            from redis_autoheal.ssh import SshHost  # noqa: PLC0415 -- see the module docstring

            host = self._hosts[key] = SshHost(endpoint)
        return host

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(h.close() for h in self._hosts.values()))
        self._hosts.clear()
