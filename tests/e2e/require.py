"""What a whole stack needs on this machine: root and Debian's packages."""

from __future__ import annotations

from demo.stack import ALERTMANAGER, PROMETHEUS
from tests.support import require_binary, require_root


def require_stack() -> None:
    require_root()
    require_binary(str(PROMETHEUS))
    require_binary(str(ALERTMANAGER))
    require_binary("redis-server")
