"""python -m demo: bring up the whole stack locally, break Redis, print how it healed.

Needs root (the test host is a network namespace) and Debian's prometheus and
prometheus-alertmanager packages; `bash scripts/demo.sh` installs everything first. Everything
listens on 127.0.0.1; the test host is at 198.18.N.2. Ctrl-C (or SIGTERM, SIGHUP) stops it all
and removes the temporary files, also when nobody reads the output any more: with
`scripts/demo.sh | tee demo.log` the same Ctrl-C ends tee, and a closed terminal ends the reader
too. Output that cannot be written is dropped; the cleanup never waits on it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from demo import scenario
from demo.procs import StackError
from demo.stack import ALERTMANAGER, PROMETHEUS, Stack, StackOptions

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def say(text: str = "") -> None:
    """Print a line; if stdout's reader has gone (EPIPE) or its terminal closed (EIO), drop it."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError:
        _discard_output()


def _discard_output() -> None:
    """Point stdout, and stderr if it went to the same place, at /dev/null: later lines, the
    unwritten rest of this one and the interpreter's last flush at exit all go nowhere, rather
    than failing again in the middle of the cleanup."""
    try:
        out = sys.stdout.fileno()
        gone = os.fstat(out)
    except (OSError, ValueError):  # no descriptor at all: nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, out)
        with contextlib.suppress(OSError):
            err = os.fstat(sys.stderr.fileno())
            if (err.st_dev, err.st_ino) == (gone.st_dev, gone.st_ino):
                os.dup2(devnull, sys.stderr.fileno())
    finally:
        os.close(devnull)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    p.add_argument(
        "--fault",
        choices=sorted(scenario.FAULTS),
        default="kill9",
        help="how to break Redis: "
        + "; ".join(f"{k}: {v}" for k, v in scenario.FAULTS.items())
        + " (default: kill9)",
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="stop and clean up right after printing the timeline",
    )
    p.add_argument(
        "--keep-files",
        action="store_true",
        help="leave the stack's directory (configs, logs, audit log) behind",
    )
    return p


def _stop_on(signum: int, frame: FrameType | None) -> None:
    del frame
    raise KeyboardInterrupt(signal.Signals(signum).name)


def print_story(outcome: scenario.Outcome, fault: str) -> None:
    say()
    say(f"What happened after: {scenario.FAULTS[fault]}")
    say(outcome.timeline.render())
    say()
    say(outcome.timeline.summary())
    if outcome.problem is not None:
        say(f"Not settled: {outcome.problem}")
        say("(If the circuit breaker opened, see: redis-autoheal breaker status|reset.)")


def print_links(stack: Stack) -> None:
    assert stack.host is not None
    say()
    say("The stack keeps running. Open:")
    for name, url in stack.links().items():
        say(f"  {name + ':':<26} {url}")
    say(f"  {'audit log:':<26} {stack.audit_path}")
    say(f"  {'redis-autoheal config:':<26} {stack.config_path}")
    say("Break it yourself (as root, from the repository):")
    say(f"  .venv/bin/python -m testhost fault --dir {stack.host.workdir} kill9")
    say("    (or sigstop, stop, start-fails on; python -m testhost --help)")
    say(f"  .venv/bin/redis-autoheal breaker status --config {stack.config_path}")


def wait_for_operator(stack: Stack) -> None:
    """Until Ctrl-C; on a terminal, Enter kills Redis again and prints the new story."""
    if not sys.stdin.isatty():
        say("Ctrl-C (or SIGTERM) stops everything and cleans up.")
        threading.Event().wait()  # interrupted by a signal's KeyboardInterrupt
        return
    while True:
        say("Press Enter to kill -9 Redis again; Ctrl-C stops everything and cleans up.")
        if not sys.stdin.readline():  # end of input: just wait for the signal
            threading.Event().wait()
        print_story(scenario.run(stack, "kill9"), "kill9")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        say("demo: needs root: the test host is a network namespace (sudo bash scripts/demo.sh)")
        return 1
    for binary in (PROMETHEUS, ALERTMANAGER):
        if not binary.exists():
            say(f"demo: {binary} is missing: run bash scripts/setup.sh (or scripts/demo.sh)")
            return 1
    signal.signal(signal.SIGTERM, _stop_on)
    signal.signal(signal.SIGHUP, _stop_on)
    say(
        "redis-autoheal demo: the whole stack on this machine (loopback only), then a broken Redis."
    )
    stack: Stack | None = None
    code = 0
    try:
        stack = Stack(StackOptions(say=lambda text: say(f"  {text}"), keep_workdir=args.keep_files))
        say(f"  files: {stack.workdir}")
        stack.start()
        say("  live: Prometheus scrapes every layer, rules loaded, Alertmanager connected.")
        say(f"Breaking Redis: {scenario.FAULTS[args.fault]} ...")
        outcome = scenario.run(stack, args.fault)
        print_story(outcome, args.fault)
        if args.no_wait:
            code = 0 if outcome.problem is None else 1
        else:
            print_links(stack)
            wait_for_operator(stack)
    except KeyboardInterrupt:
        say()
        code = 130
    except StackError as e:
        say(f"demo: {e}")
        code = 1
    finally:
        # A second Ctrl-C, or the SIGHUP of a closing terminal, must not cut the cleanup short.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if stack is not None:
            code = stop(stack, code, keep_files=args.keep_files)
    return code


def stop(stack: Stack, code: int, *, keep_files: bool) -> int:
    """Stop the stack and say so; the exit code, made 1 if stopping failed."""
    say("Stopping the stack (Prometheus, Alertmanager, remediator, exporter, test host)...")
    try:
        stack.close()
    except StackError as e:
        say(f"demo: {e}")
        return code or 1
    kept = f"; files kept in {stack.workdir}" if keep_files else f"; removed {stack.workdir}"
    say(f"Stopped{kept}.")
    return code


if __name__ == "__main__":
    sys.exit(main())
