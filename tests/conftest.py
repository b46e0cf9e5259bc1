"""Shared test helpers: what needs root or a Debian binary skips with a reason, fails under CI."""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def require_root() -> None:
    """Skip (or fail under CI) unless running as root."""
    if os.geteuid() != 0:
        _missing("needs root: network namespaces, sshd and sudo")


def require_binary(name: str) -> str:
    """Return the path of a binary from Debian's packages; skip (or fail under CI) if absent."""
    path = shutil.which(name)
    if path is None:
        _missing(f"needs {name}: run scripts/setup.sh to install it")
        raise AssertionError  # unreachable: _missing raised
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


pytest_plugins = ["testhost.pytest_plugin"]
