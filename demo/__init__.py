"""The whole redis-autoheal stack on one machine, and the demo that breaks Redis in it.

``demo.stack.Stack`` starts, on loopback only: the test host (the runbook's VM3 in a network
namespace, ``testhost``), the exporter, the remediator, Debian's Prometheus and Alertmanager,
and a local HTTP sink standing in for on-call and ops. It writes their configs from the
repository's (``alerts/``) at a fast cadence, waits until each is ready, and stops everything
in reverse order. The demo (``python -m demo``), the end-to-end tests (``tests/e2e``) and the
benchmark (``bench/e2e_recovery.py``) all use it. ``demo.timeline`` reads back what happened
from the sources: the host's journal, Prometheus, Alertmanager and the audit log.
"""
