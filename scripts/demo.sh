#!/usr/bin/env bash
# The demo, as root on Debian 12: installs what it needs (scripts/setup.sh: Debian's redis-server,
# openssh-server, sudo, prometheus, prometheus-alertmanager; the venv), brings up the whole stack
# on this machine (test host, exporter, remediator, Prometheus, Alertmanager; loopback only),
# kills Redis with kill -9 and prints the recovery as a timeline read from Prometheus,
# Alertmanager and the audit log. The stack keeps running until Ctrl-C, which cleans up.
# Options go to `python -m demo` (--fault sigstop|start-fails, --no-wait, --keep-files).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root: the test host is a network namespace (sudo bash scripts/demo.sh)" >&2
  exit 1
fi
bash scripts/setup.sh
# exec: no shell stays between the terminal and the demo, so Ctrl-C, SIGTERM and SIGHUP reach
# the demo itself, which stops the whole stack even when its output has nowhere to go (`| tee`
# ends on the same Ctrl-C).
exec .venv/bin/python -m demo "$@"
