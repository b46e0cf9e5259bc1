"""The runbook's VM3 in a box: a real Redis host (netns, sshd, sudo, systemd stand-ins) for tests.

Build one with ``TestHost.build()`` (root only), or use the pytest fixtures in
``testhost.pytest_plugin``, or ``python -m testhost up --dir DIR`` / ``down --dir DIR``.
"""

from __future__ import annotations

from testhost.files import SUDOERS, HostOptions
from testhost.host import BuildError, Invocation, TeardownError, TestHost

__all__ = ["SUDOERS", "BuildError", "HostOptions", "Invocation", "TeardownError", "TestHost"]
