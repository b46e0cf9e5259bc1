"""The mutation score of each module, from a mutmut run (scripts/mutation.sh calls this).

    python scripts/mutation.py modules [--changed BASE] [MODULE ...]
        the module files to mutate: those named (remediator/recovery.py or remediator.recovery),
        else those of remediator/ and redis_autoheal/ that changed since BASE, else all of them
    python scripts/mutation.py configure WORKDIR MODULE_FILE
        restrict the work copy's [tool.mutmut] to that file (only_mutate) and to its tests
        (TESTS: pytest_add_cli_args_test_selection)
    python scripts/mutation.py score WORKDIR [--record | --check] MODULE_FILE ...
        print each module's score from its run in WORKDIR/<module>; --record writes it to
        tests/mutation/scores.json, --check fails (exit 1) when one is below the score recorded
        there

A module's score is killed / (mutants - equivalent): a mutant counts as killed when a test
failed or timed out with it (or mypy rejected it); one that no test reaches ("no tests")
counts as surviving. tests/mutation/equivalent.txt lists the mutants no test can kill, each
with the line it changes and why; an entry whose line no longer matches (the function changed)
is stale, does not count, and is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("remediator", "redis_autoheal")
SCORES = REPO / "tests" / "mutation" / "scores.json"
EQUIVALENT = REPO / "tests" / "mutation" / "equivalent.txt"
# The tests each module's mutants run against: those that kill them without a test host where
# they can. A mutant runs every selected test that reaches its function (in a process forked
# per mutant, so a test host is built anew for each), and one that hangs is stopped only after
# those tests' time x timeout_multiplier: the whole package's tests made a pass of one module
# take hours. A module not listed runs its package's tests (tests/remediator or
# tests/redis_autoheal). The selection only has to kill: the suite itself checks the rest.
_R = "tests/remediator/"
TESTS: dict[str, list[str]] = {
    "remediator/act.py": [
        f"{_R}test_recovery.py",
        f"{_R}test_mutants_recovery.py",
        f"{_R}test_mutants_act.py",
        f"{_R}test_operations.py",
    ],
    "remediator/audit.py": [
        f"{_R}test_audit.py",
        f"{_R}test_audit_failures.py",
        f"{_R}test_mutants_audit.py",
        f"{_R}test_events.py",
    ],
    "remediator/breaker.py": [f"{_R}test_breaker.py", f"{_R}test_recovery.py"],
    "remediator/coordination.py": [
        f"{_R}test_coordination.py",
        f"{_R}test_mutants_coordination.py",
        f"{_R}test_dispatch.py",
        f"{_R}test_mutants_dispatch.py",
    ],
    "remediator/dispatch.py": [
        f"{_R}test_dispatch.py",
        f"{_R}test_mutants_dispatch.py",
        f"{_R}test_mutants_coordination.py",
        f"{_R}test_webhook.py",
    ],
    "remediator/events.py": [
        f"{_R}test_events.py",
        f"{_R}test_audit.py",
        f"{_R}test_review.py",
        f"{_R}test_violations.py",
    ],
    "remediator/operations.py": [
        f"{_R}test_operations.py",
        f"{_R}test_mutants_operations.py",
    ],
    "remediator/recovery.py": [
        f"{_R}test_recovery.py",
        f"{_R}test_mutants_recovery.py",
        f"{_R}test_dispatch.py",
        f"{_R}test_audit_failures.py",
    ],
    "remediator/verify.py": [f"{_R}test_verify.py", f"{_R}test_recovery.py"],
    "remediator/webhook.py": [f"{_R}test_webhook.py", f"{_R}test_mutants_dispatch.py"],
}
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
# mutmut's exit code of the forked test run -> status (mutmut.stats.status_by_exit_code)
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    37: "caught by type check",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
}


def all_modules() -> list[str]:
    return sorted(
        str(p.relative_to(REPO))
        for package in PACKAGES
        for p in (REPO / package).glob("*.py")
        if p.name not in {"__init__.py", "__main__.py"}
    )


def as_file(module: str) -> str:
    """remediator.recovery or remediator/recovery.py -> remediator/recovery.py"""
    path = module if module.endswith(".py") else module.replace(".", "/") + ".py"
    if path not in all_modules():
        sys.exit(f"mutation: {module}: not a module of {' or '.join(PACKAGES)}")
    return path


def as_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def changed_since(base: str) -> list[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", base, "--", *PACKAGES],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [p for p in all_modules() if p in out]


def cmd_modules(args: argparse.Namespace) -> None:
    if args.module:
        files = [as_file(m) for m in args.module]
    elif args.changed:
        files = changed_since(args.changed)
    else:
        files = all_modules()
    print(" ".join(files))


def tests_of(path: str) -> list[str]:
    """The test files that `path`'s mutants run against (TESTS; else its package's tests)."""
    package = Path(path).parts[0]
    return [t for t in TESTS.get(path, [f"tests/{package}"]) if (REPO / t).exists()]


def cmd_configure(args: argparse.Namespace) -> None:
    pyproject = Path(args.workdir) / "pyproject.toml"
    text = pyproject.read_text()
    header = "[tool.mutmut]\n"
    if header not in text:
        sys.exit(f"mutation: {pyproject} has no [tool.mutmut] section")
    # Keys set here replace the section's own (TOML allows a key once).
    key = "pytest_add_cli_args_test_selection"
    text = "\n".join(line for line in text.splitlines() if not line.startswith(key))
    settings = (
        f"only_mutate = {json.dumps([args.file])}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests_of(args.file))}\n"
    )
    pyproject.write_text(text.replace(header, header + settings, 1) + "\n")


def equivalents() -> dict[str, tuple[str, str]]:
    """mutant name -> (the mutated line, why no test can tell it from the original)"""
    found: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(EQUIVALENT.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        # The name and the reason hold no " | "; the mutated line may (a | b).
        name, _, rest = line.partition(" | ")
        mutated, _, why = rest.rpartition(" | ")
        if not (name.strip() and mutated.strip() and why.strip()):
            sys.exit(f"mutation: {EQUIVALENT}:{number}: want 'NAME | MUTATED LINE | WHY'")
        found[name.strip()] = (mutated.strip(), why.strip())
    return found


def mutated_lines(workdir: Path, names: list[str]) -> dict[str, str]:
    """Each mutant's changed line as `mutmut show` prints it (its '+' line, stripped)."""
    lines: dict[str, str] = {}
    for name in names:
        diff = subprocess.run(
            [sys.executable, "-m", "mutmut", "show", name],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        added = [
            d[1:].strip() for d in diff.splitlines() if d.startswith("+") and not d.startswith("++")
        ]
        lines[name] = " ".join(added)
    return lines


def cmd_score(args: argparse.Namespace) -> None:  # noqa: C901 -- one table, its two uses
    workdir = Path(args.workdir)
    equivalent = equivalents()
    scores: dict[str, dict[str, float | int]] = {}
    stale: list[str] = []
    survivors: list[str] = []
    unchecked: dict[str, int] = {}
    not_run: list[str] = []
    for path in args.files:
        rundir = workdir / as_name(path)
        meta = rundir / "mutants" / f"{path}.meta"
        if not meta.exists():
            not_run.append(as_name(path))
            continue
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        status = {
            k: STATUS.get(v, "suspicious") if v is not None else "not checked"
            for k, v in codes.items()
        }
        claimed = [k for k in status if k in equivalent and status[k] not in KILLED]
        actual = mutated_lines(rundir, claimed)
        equiv = {k for k in claimed if actual[k] == equivalent[k][0]}
        stale += [
            f"{k}: listed as '{equivalent[k][0]}', now '{actual[k]}'"
            for k in claimed
            if k not in equiv
        ]
        counts = Counter(status.values())
        unchecked[as_name(path)] = counts["not checked"]
        killed = sum(counts[s] for s in KILLED)
        total = len(status) - len(equiv)
        survivors += sorted(
            f"{k} ({s})"
            for k, s in status.items()
            if s not in KILLED | {"not checked"} and k not in equiv
        )
        scores[as_name(path)] = {
            "mutants": len(status),
            "killed": killed,
            "equivalent": len(equiv),
            "score": round(100 * killed / total, 1) if total else 100.0,
        }
    print(f"{'module':32} {'mutants':>8} {'killed':>7} {'equiv':>6} {'score':>7}")
    for name, s in scores.items():
        print(f"{name:32} {s['mutants']:8} {s['killed']:7} {s['equivalent']:6} {s['score']:6.1f}%")
    all_mutants = sum(int(s["mutants"]) for s in scores.values())
    all_killed = sum(int(s["killed"]) for s in scores.values())
    all_equiv = sum(int(s["equivalent"]) for s in scores.values())
    if all_mutants - all_equiv:
        overall = 100 * all_killed / (all_mutants - all_equiv)
        print(f"{'all':32} {all_mutants:8} {all_killed:7} {all_equiv:6} {overall:6.1f}%")
    if survivors:
        (workdir / "survivors.txt").write_text("\n".join(survivors) + "\n")
        print(
            f"{len(survivors)} surviving mutant(s): {workdir / 'survivors.txt'}; "
            f"see one with: (cd {workdir}/MODULE && mutmut show NAME)"
        )
    for name in not_run:
        print(f"{name}: not run (the budget ran out before it)")
    for entry in stale:
        print(f"stale entry in {EQUIVALENT.relative_to(REPO)}: {entry}")
    recorded = json.loads(SCORES.read_text()) if SCORES.exists() else {}
    incomplete = {name: unchecked[name] for name in scores if unchecked[name]}
    for name, n in incomplete.items():
        print(f"{name}: {n} mutant(s) not tested (the run was cut short)")
    if args.record:
        # A run cut short records a floor: its untested mutants counted as surviving.
        for name, s in scores.items():
            s["untested"] = incomplete.get(name, 0)
        recorded.update(scores)
        SCORES.write_text(json.dumps(dict(sorted(recorded.items())), indent=2) + "\n")
        print(f"recorded in {SCORES.relative_to(REPO)}")
    if args.check:
        check(scores, recorded, incomplete)


def check(
    scores: dict[str, dict[str, float | int]],
    recorded: dict[str, dict[str, float | int]],
    incomplete: dict[str, int],
) -> None:
    """Fail when a module's score is below its record. A module whose run was cut short fails
    only if it would stay below even were every untested mutant killed; else it is reported."""
    dropped = []
    for name, s in scores.items():
        if name not in recorded:
            print(f"{name}: no recorded score (scripts/mutation.sh --record {name})")
            continue
        want = recorded[name]["score"]
        total = int(s["mutants"]) - int(s["equivalent"])
        best = 100 * (int(s["killed"]) + incomplete.get(name, 0)) / total if total else 100.0
        if round(best, 1) < want:
            dropped.append(f"{name}: {s['score']}% < {want}% recorded")
        elif s["score"] >= want:
            print(f"{name}: {s['score']}% >= {want}% recorded: ok")
        else:
            print(f"{name}: undecided: {s['score']}% to {best:.1f}% (recorded {want}%)")
    for drop in dropped:
        print(f"mutation score dropped: {drop}")
    if dropped:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("modules")
    p.add_argument("--changed", metavar="BASE")
    p.add_argument("module", nargs="*")
    p.set_defaults(func=cmd_modules)
    p = sub.add_parser("configure")
    p.add_argument("workdir")
    p.add_argument("file")
    p.set_defaults(func=cmd_configure)
    p = sub.add_parser("score")
    p.add_argument("workdir")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--record", action="store_true")
    mode.add_argument("--check", action="store_true")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_score)
    args = parser.parse_args()
    os.chdir(REPO)
    args.func(args)


if __name__ == "__main__":
    main()
