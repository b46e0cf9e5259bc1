"""The runbook's VM3 in a box: a real Redis host for integration tests (root only).

Each host has its own network namespace ``ahN`` reached over a veth pair (198.18.N.1 on the root
side, the host at 198.18.N.2), real OpenSSH sshd on port 22 with user ``autobot`` (ed25519 key),
real sudo with the runbook's sudoers file, and systemctl/journalctl stand-ins driving a real
redis-server on port 6379, all inside a private mount namespace (the real /etc is untouched).

Use it through the pytest fixtures ``test_host`` / ``test_host_factory`` (testhost.pytest_plugin),
``TestHost.build(HostOptions(...))`` + ``teardown()``, or ``python -m testhost up --dir DIR`` /
``down --dir DIR``. What a redis-autoheal config needs: ``address``, ``redis_port``, ``ssh_port``,
``user``, ``unit``, ``key_file``, ``known_hosts`` (or ``target()``, a ready ``targets:`` entry).

Faults: ``kill9``, ``terminate``, ``stop``, ``sigstop``/``sigcont``, ``slow_start(s)``,
``start_fails(bool)``, ``link_down``/``link_up``, ``blackhole``/``unblackhole``,
``change_host_key``. Reads: ``unit_state``, ``unit_status``, ``redis_pid``, ``invocations``,
``max_starts_in_window``, ``journal``, ``ping``, ``wait_state``. Running things: ``ssh``,
``ssh_argv``, ``run`` (root inside the host), ``unitctl`` (the console's systemctl).
"""

from __future__ import annotations

from testhost.files import SUDOERS, HostOptions
from testhost.host import BuildError, Invocation, TeardownError, TestHost

__all__ = ["SUDOERS", "BuildError", "HostOptions", "Invocation", "TeardownError", "TestHost"]
