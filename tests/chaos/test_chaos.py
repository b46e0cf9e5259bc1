"""The chaos campaign in the suite: a few fixed sequences against the real test host and the
real remediator, every invariant kept; the generator replays; the campaign catches real harm.

The long campaign is bench/chaos.py (--sequences N --seed S). A failing sequence here prints
its faults, what was skipped, the deliveries and each violation: replay it with
`bench/chaos.py --seed S --only I --keep DIR` to keep its remediator log and audit files.
"""

from __future__ import annotations

from collections import Counter

import pytest

from chaos import campaign, invariants, plan
from chaos.runner import run_sequence
from tests.support import require_binary, require_root

# (seed, index): each a different trouble on top of an outage, short enough for the suite.
FIXED = [
    pytest.param(1, 5, id="kill9-ssh-dropped-mid-restart-stale-alert"),
    pytest.param(1, 8, id="kill9-slow-start-remediator-sigkill-mid-recovery"),
    pytest.param(2, 19, id="terminate-remediator-sigterm-mid-recovery"),
    pytest.param(3, 69, id="kill9-audit-disk-full-503-retried-then-freed"),
    pytest.param(1, 15, id="kill9-host-key-changed-then-back"),
    pytest.param(2, 4, id="sigstop-link-down-sigcont-link-up-stale-alert"),
    pytest.param(1, 26, id="terminate-while-starts-fail-exhausted-paged"),
    pytest.param(1, 20, id="sigstop-sigcont-flapping-three-outages-breaker"),
]


def test_the_same_seed_replays_the_same_sequence():
    assert plan.generate(7, 3) == plan.generate(7, 3)
    assert plan.generate(7, 3) != plan.generate(7, 4)
    assert plan.generate(7, 3) != plan.generate(8, 3)


def test_the_generator_covers_every_fault_and_orders_steps():
    kinds: Counter[str] = Counter()
    for index in range(300):
        seq = plan.generate(1, index)
        assert [s.at for s in seq.steps] == sorted(s.at for s in seq.steps)
        assert 1 <= sum(s.fault in plan.OUTAGES for s in seq.steps) <= 6  # 3, each may flap
        kinds.update(s.fault for s in seq.steps)
        # what is switched on is switched off again within the sequence
        for on, off in (("link_down", "link_up"), ("host_key", "host_key_back")):
            assert sum(s.fault == on for s in seq.steps) == sum(s.fault == off for s in seq.steps)
        for flag in ("slow_start", "start_fails"):
            last = [s for s in seq.steps if s.fault == flag][-1:]
            assert all(s.arg == 0 for s in last)
    expected = {*plan.OUTAGES, *plan.WAITING, "sigcont", "self_start", "slow_start"}
    expected |= {"start_fails", "link_down", "link_up", "host_key", "host_key_back"}
    expected |= {"audit_full", "audit_free", "stale_alert"}
    assert set(kinds) == expected


@pytest.mark.root
@pytest.mark.parametrize(("seed", "index"), FIXED)
def test_a_fixed_sequence_keeps_every_invariant(seed, index, tmp_path):
    require_root()
    sequence = plan.generate(seed, index)
    result = run_sequence(sequence, tmp_path / "run", lambda _text: None)
    assert result.applied, campaign.describe(result)
    assert result.truth.samples
    assert result.truth.probes
    assert result.violations == [], "\n".join(
        [*(str(v) for v in result.violations), campaign.describe(result)]
    )


@pytest.mark.root
def test_a_sequence_on_the_full_stack_keeps_every_invariant(tmp_path):
    """The same campaign with the demo stack's exporter, Prometheus and Alertmanager delivering
    (and its pager sink for pages) instead of the simulation."""
    require_root()
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    sequence = plan.generate(1, 15)  # kill -9, the host key changed and back
    result = run_sequence(sequence, tmp_path / "run", lambda _text: None, full_stack=True)
    assert result.full_stack
    assert len(result.applied) == len(sequence.steps), campaign.describe(result)
    assert result.truth.audit, "the stack's remediator audited nothing"
    assert result.violations == [], "\n".join(
        [*(str(v) for v in result.violations), campaign.describe(result)]
    )


@pytest.mark.root
def test_the_campaign_catches_a_restart_of_a_healthy_redis(tmp_path):
    """An SSH `sudo systemctl restart` as autobot, not by the remediator and with no alert:
    the host's own log shows a restart of a healthy unit (I2), one the audit never saw (I6)."""
    require_root()
    sequence = plan.Sequence(99, 0, (plan.Step(1.5, "rogue_restart"),))
    result = run_sequence(sequence, tmp_path / "run", lambda _text: None)
    assert result.applied == [result.applied[0]]
    assert result.applied[0].endswith("rogue_restart exit 0")
    found = {(v.invariant, v.detail.split(" at ")[0]) for v in result.violations}
    assert found == {("I2", "restart"), ("I6", "host ran restart")}, result.violations
    assert [v for _, v in invariants.classify(result.truth)] == []  # the blip is no outage
