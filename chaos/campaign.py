"""N sequences of one seed, and the table bench/chaos.py prints."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chaos import invariants, plan
from chaos.runner import REPO, Result, run_sequence

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


@dataclass
class Summary:
    seed: int
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, verdict: str) -> int:
        return sum(1 for r in self.results for _, v in invariants.classify(r.truth) if v == verdict)

    @property
    def faults(self) -> int:
        return sum(len(r.applied) for r in self.results)

    @property
    def outages(self) -> int:
        return sum(len(invariants.classify(r.truth)) for r in self.results)

    @property
    def violations(self) -> list[invariants.Violation]:
        return [v for r in self.results for v in r.violations]

    def by_invariant(self) -> dict[str, int]:
        counts = dict.fromkeys(invariants.INVARIANTS, 0)
        for v in self.violations:
            counts[v.invariant] += 1
        return counts


def run(  # noqa: PLR0913 - each a separate knob of the campaign
    seed: int,
    indexes: Iterable[int],
    say: Callable[[str], None] = print,
    *,
    time_limit: float | None = None,
    keep: Path | None = None,
    verbose: bool = False,
    full_stack_every: int = 0,
    remediator_root: Path = REPO,
) -> Summary:
    """Run the sequences `indexes` of `seed` one after another (bounded by `time_limit`);
    with `full_stack_every` K, each K-th one (index divisible by K) on the demo stack."""
    summary = Summary(seed)
    began = time.monotonic()
    for index in indexes:
        if time_limit is not None and time.monotonic() - began > time_limit:
            say(f"time limit of {time_limit:g}s reached: stopping before sequence {index}")
            break
        sequence = plan.generate(seed, index)
        full = full_stack_every > 0 and index % full_stack_every == 0
        mode = " (full stack)" if full else ""
        say(f"--- {sequence.name}{mode}: " + "; ".join(s.describe() for s in sequence.steps))
        workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-{index}-", dir=keep))
        try:
            result = run_sequence(
                sequence, workdir, say, full_stack=full, remediator_root=remediator_root
            )
        finally:
            if keep is None:
                shutil.rmtree(workdir, ignore_errors=True)
        summary.results.append(result)
        verdicts = [v for _, v in invariants.classify(result.truth)]
        say(
            f"    applied {len(result.applied)}, skipped {len(result.skipped)}, "
            f"outages {verdicts}, violations {len(result.violations)}"
        )
        for v in result.violations:
            say(f"    VIOLATION {v}")
        if result.violations or verbose:
            say(describe(result))
    summary.seconds = time.monotonic() - began
    return summary


def describe(result: Result) -> str:
    """What happened in one sequence, for a person replaying it."""
    lines = [f"    applied: {a}" for a in result.applied]
    lines += [f"    skipped: {s}" for s in result.skipped]
    lines += [f"    note: {n}" for n in result.notes]
    lines.append(f"    deliveries: {result.deliveries}")
    return "\n".join(lines)


def table(summary: Summary) -> str:
    """The campaign's table: counts, violations by invariant, then each violation."""
    rows = [
        ("seed", str(summary.seed)),
        ("sequences", str(len(summary.results))),
        ("  on the full stack", str(sum(r.full_stack for r in summary.results))),
        ("faults applied", str(summary.faults)),
        ("outages (> detection budget)", str(summary.outages)),
        ("  healed", str(summary.count("healed"))),
        ("  paged", str(summary.count("paged"))),
        ("  lost", str(summary.count("lost") + summary.count("unjudged"))),
        ("violations", str(len(summary.violations))),
    ]
    rows += [(f"  {name}", str(n)) for name, n in summary.by_invariant().items()]
    rows.append(("seconds", f"{summary.seconds:.0f}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"| {k.ljust(width)} | {v.rjust(6)} |" for k, v in rows]
    lines.insert(0, f"| {'chaos campaign'.ljust(width)} | {'':>6} |")
    lines.insert(1, f"|{'-' * (width + 2)}|{'-' * 8}|")
    details = [str(v) for v in summary.violations]
    if details:
        lines += ["", "violations (replay: bench/chaos.py --seed S --only I):", *details]
    return "\n".join(lines)
