"""The chaos campaign: seeded fault sequences against the real test host and the
real remediator, judged by the invariants I1-I7 from the ground truth (see chaos/).

    sudo .venv/bin/python bench/chaos.py --sequences 30 --seed 1
    sudo .venv/bin/python bench/chaos.py --seed 1 --only 7        # replay one sequence
    sudo .venv/bin/python bench/chaos.py --sequences 10 --full-stack-every 5

Direct mode (the default) delivers Alertmanager's notifications itself (chaos/alertsim.py);
with --full-stack-every K, each K-th sequence runs on the demo stack instead (demo/stack.py:
the exporter, Prometheus and Alertmanager at the fast cadence, on-call's pages in its sink),
without the faults that stack cannot take (a full audit disk, a stale alert).

Each sequence builds its own test host and remediator (a few seconds to ~30 s each), so the
run is bounded by --sequences and by --time-limit. The same seed replays the same faults; the
deliveries follow what the host does, as Alertmanager's would. Prints each sequence's faults
and violations as it goes, then the table; exits 1 if anything was violated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos import campaign
from chaos.runner import REPO


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=10, help="how many (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="the campaign's seed (default 1)")
    parser.add_argument("--first", type=int, default=0, help="index of the first sequence")
    parser.add_argument("--only", type=int, default=None, help="run just this sequence index")
    parser.add_argument(
        "--time-limit", type=float, default=3600.0, help="stop starting sequences after (s)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep each sequence's files here")
    parser.add_argument("--verbose", action="store_true", help="every sequence's details")
    parser.add_argument(
        "--full-stack-every",
        type=int,
        default=0,
        metavar="K",
        help="run each K-th sequence on the demo stack (real Prometheus and Alertmanager)",
    )
    parser.add_argument(
        "--remediator-from",
        type=Path,
        default=REPO,
        metavar="DIR",
        help="the checkout whose remediator to run (default: this one)",
    )
    args = parser.parse_args()
    if not (args.remediator_from / "remediator" / "__main__.py").is_file():
        parser.error(f"--remediator-from: {args.remediator_from} has no remediator/__main__.py")
    if args.sequences < 1:
        parser.error("--sequences must be at least 1")
    indexes = (
        [args.only] if args.only is not None else range(args.first, args.first + args.sequences)
    )
    print(f"chaos campaign: seed {args.seed}, sequences {list(indexes)[:1]}..", flush=True)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    summary = campaign.run(
        args.seed,
        indexes,
        lambda text: print(text, flush=True),
        time_limit=args.time_limit,
        keep=args.keep,
        verbose=args.verbose,
        full_stack_every=args.full_stack_every,
        remediator_root=args.remediator_from.resolve(),
    )
    print(campaign.table(summary))
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
