"""End-to-end time to recover from kill -9, measured on the whole stack; prints figures.

    sudo .venv/bin/python bench/e2e_recovery.py [--runs 10] [--seed 1]

Measured at the fast cadence (demo/configs.py FAST) on one stack (demo/stack.py), `--runs`
times: kill -9 redis-server on the test host, then
- detection: kill (the host's journal: "Main process exited") to webhook (Alertmanager's log:
  "Notify success" to the remediator, i.e. the remediator has answered 200);
- action: webhook to PONG (this script PINGs Redis every 10 ms from the kill on, as a client);
- total: kill to PONG.
Each kill waits a random 0-3 s first, so it lands at a random point of the scrape and
evaluation cycles, and only once the previous outage has left Alertmanager (no open group) and
the remediator's start budget (3 starts in 11 s) is free. The circuit breaker is raised to 100
recoveries for the benchmark (the runbook's 3 in 5 minutes would stop it after 3 runs).

Computed for the runbook's production cadence: detection is modelled from the numbers in
alerts/prometheus.yml (PING and systemd scrape intervals and timeouts, evaluation interval),
alerts/thresholds.yml (failed_pings) and alerts/alertmanager.yml (the remediator route's
group_wait): scrapes, evaluations and the kill at independent uniformly random phases, the
alert fired by the first evaluation whose rule sees it (RedisDown: the last 3 samples in its
window; RedisServiceFailed: one sample of state failed), then group_wait. A kill -9 is seen by
whichever comes first. The model run on the fast cadence's numbers is printed beside the
measured detection, as a check. The production total adds the measured action times
(the action does not depend on the cadence), resampled.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo import scenario  # noqa: E402
from demo.configs import FAST, TARGET  # noqa: E402
from demo.stack import Stack, StackOptions  # noqa: E402
from demo.timeline import collect  # noqa: E402
from redis_autoheal.thresholds import parse_duration  # noqa: E402

PING_EVERY = 0.01
PONG_LIMIT = 120.0
MODEL_SAMPLES = 200_000
START_BUDGET_WINDOW = 11.0  # remediator/control.py: 3 starts within 11 s


@dataclass(frozen=True)
class Run:
    detection: float  # kill -> webhook answered
    action: float  # webhook -> PONG
    total: float  # kill -> PONG
    alert: str  # the alert the remediator acted on


@dataclass(frozen=True)
class Cadence:
    """The numbers detection depends on, in seconds."""

    ping_interval: float
    ping_duration: float  # until a failed PING's sample is visible (refused: ~0)
    systemd_interval: float
    systemd_duration: float  # one `systemctl is-active` over SSH
    evaluation: float
    failed_pings: int
    group_wait: float


def production_cadence(systemd_duration: float) -> Cadence:
    prom = yaml.safe_load((ROOT / "alerts" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    thresholds = yaml.safe_load((ROOT / "alerts" / "thresholds.yml").read_text())
    am = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text())
    (route,) = [r for r in am["route"]["routes"] if r["receiver"] == "remediator"]

    def seconds(text: str) -> float:
        return float(parse_duration(text, "bench"))

    return Cadence(
        ping_interval=seconds(jobs["redis-connectivity"]["scrape_interval"]),
        ping_duration=0.0,  # kill -9: the connection is refused at once
        systemd_interval=seconds(jobs["redis-systemd"]["scrape_interval"]),
        systemd_duration=systemd_duration,
        evaluation=seconds(prom["global"]["evaluation_interval"]),
        failed_pings=int(thresholds["alerts"]["RedisDown"]["failed_pings"]),
        group_wait=seconds(route["group_wait"]),
    )


def fast_cadence(systemd_duration: float) -> Cadence:
    return Cadence(
        ping_interval=FAST.connectivity,
        ping_duration=0.0,
        systemd_interval=FAST.systemd,
        systemd_duration=systemd_duration,
        evaluation=FAST.evaluation,
        failed_pings=3,
        group_wait=parse_duration(FAST.remediator_group_wait, "FAST"),
    )


def _first_eval(after: float, phase: float, every: float) -> float:
    """The first evaluation at or after `after`, evaluations at phase + k * every."""
    k = max(0, -int(-(after - phase) // every))
    return phase + k * every


def model(c: Cadence, rng: random.Random) -> tuple[float, float]:
    """One kill at time 0: (webhook via RedisDown, webhook via RedisServiceFailed)."""
    eval_phase = rng.uniform(0, c.evaluation)
    # RedisDown: PING scrapes at ping_phase + k * interval fail from the kill on; an evaluation
    # fires once its window of (n * interval - 1 s) holds the last n samples, all failed.
    ping_phase = rng.uniform(0, c.ping_interval)
    window = c.failed_pings * c.ping_interval - 1
    e = _first_eval(ping_phase + (c.failed_pings - 1) * c.ping_interval, eval_phase, c.evaluation)
    for _ in range(1000):
        visible = int((e - ping_phase - c.ping_duration) // c.ping_interval)  # newest sample
        oldest = ping_phase + (visible - c.failed_pings + 1) * c.ping_interval
        if visible >= c.failed_pings - 1 and e - oldest <= window:
            break
        e += c.evaluation
    redis_down = e + c.group_wait
    # RedisServiceFailed (for: 0s): the first systemd scrape after the kill sees `failed`.
    systemd_phase = rng.uniform(0, c.systemd_interval)
    failed = _first_eval(systemd_phase + c.systemd_duration, eval_phase, c.evaluation)
    return redis_down, failed + c.group_wait


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float]) -> str:
    return f"p5 {percentile(values, 0.05):5.1f}   p95 {percentile(values, 0.95):5.1f}"


def wait_pong(stack: Stack, limit: float) -> float:
    assert stack.host is not None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if stack.host.ping(timeout=0.2):
            return time.time()
        time.sleep(PING_EVERY)
    raise TimeoutError(f"no PONG within {limit}s")


def idle(stack: Stack) -> bool:
    """No open Alertmanager group and no remediation alert: the next outage starts afresh."""
    return not stack.am_groups() and not scenario.remediation_alerts_active(stack)


def one_run(stack: Stack, rng: random.Random) -> Run:
    assert stack.host is not None
    host = stack.host
    stack.wait_for(lambda: idle(stack), 120, "Alertmanager to forget the last outage")
    last = max((i.ts for i in host.invocations()), default=0.0)
    time.sleep(max(0.0, last + START_BUDGET_WINDOW - time.time()))
    time.sleep(rng.uniform(0, FAST.connectivity))
    origin = time.time()
    host.kill9()
    pong = wait_pong(stack, PONG_LIMIT)
    scenario.wait_settled(stack, "kill9", origin)
    timeline = collect(stack, origin, "kill -9")
    killed = timeline.first("failure")
    webhook = timeline.first("webhook")
    if killed is None or webhook is None:
        raise RuntimeError("the timeline lacks the kill or the webhook:\n" + timeline.render())
    # The delivery's text names the alert first: "delivered to the remediator: NAME firing -> ..."
    alert = webhook.text.split(": ", 1)[1].split(" ", 1)[0]
    return Run(webhook.at - killed.at, pong - webhook.at, pong - killed.at, alert)


def systemd_probe_seconds(stack: Stack) -> float:
    """The median duration of the systemd layer's probe (one SSH `systemctl is-active`)."""
    selector = f'redis_probe_duration_seconds{{layer="systemd", instance="{TARGET}"}}'
    result = stack.prom_query(f"quantile_over_time(0.5, {selector}[10m])")
    return float(result[0]["value"][1]) if result else 0.1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    runs: list[Run] = []
    options = StackOptions(circuit_breaker={"max_recoveries": 100})
    with Stack(options) as stack:
        for i in range(args.runs):
            run = one_run(stack, rng)
            runs.append(run)
            print(
                f"run {i + 1:2d}: kill->PONG {run.total:6.2f} s = detection {run.detection:5.2f} s"
                f" + action {run.action:5.2f} s  (acted on {run.alert})",
                flush=True,
            )
        probe = systemd_probe_seconds(stack)

    def p50(values: list[float]) -> float:
        return statistics.median(values)

    detection = [r.detection for r in runs]
    action = [r.action for r in runs]
    total = [r.total for r in runs]
    print()
    print(
        f"fast cadence (PING every {FAST.connectivity} s, systemd every {FAST.systemd} s, "
        f"rules every {FAST.evaluation} s, group_wait {FAST.remediator_group_wait}), "
        f"{len(runs)} runs, measured:"
    )
    for name, values in (("kill -> PONG", total), ("detection", detection), ("action", action)):
        low, high = min(values), max(values)
        print(f"  {name:<13} p50 {p50(values):6.2f} s   min {low:6.2f}   max {high:6.2f}")

    model_rng = random.Random(args.seed)
    fast = [model(fast_cadence(probe), model_rng) for _ in range(MODEL_SAMPLES)]
    fast_first = [min(a, b) for a, b in fast]
    print(
        f"  model of the same cadence: detection p50 {p50(fast_first):.2f} s "
        f"(p5 {percentile(fast_first, 0.05):.2f}, p95 {percentile(fast_first, 0.95):.2f})"
    )

    prod = production_cadence(probe)
    samples = [model(prod, model_rng) for _ in range(MODEL_SAMPLES)]
    first = [min(a, b) for a, b in samples]
    down_only = [a for a, _ in samples]
    totals = [d + model_rng.choice(action) for d in first]
    totals_down = [d + model_rng.choice(action) for d in down_only]
    print()
    print(
        f"production cadence (computed: PING every {prod.ping_interval:g} s, {prod.failed_pings} "
        f"failures, systemd every {prod.systemd_interval:g} s, rules every {prod.evaluation:g} s, "
        f"group_wait {prod.group_wait:g} s; action as measured):"
    )
    print("  kill -9 (RedisServiceFailed or RedisDown, whichever first):")
    print(f"    detection    p50 {p50(first):6.1f} s   {spread(first)}")
    print(f"    kill -> PONG p50 {p50(totals):6.1f} s")
    print("  RedisDown alone (3 failed PINGs; e.g. no systemd layer):")
    print(f"    detection    p50 {p50(down_only):6.1f} s   {spread(down_only)}")
    print(f"    kill -> PONG p50 {p50(totals_down):6.1f} s")
    print(f"  action (webhook -> PONG) p50 {p50(action):.2f} s, measured above")
    print()
    command = f"bench/e2e_recovery.py --runs {args.runs} --seed {args.seed}"
    print(f"command: sudo .venv/bin/python {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
