"""python -m testhost up|down|fault|status|gc: a test host for demos and manual poking (root).

``up [--dir DIR]`` builds a host whose files live in DIR, prints its description as JSON and
leaves it running (its init owns the allocation from then on); ``down [--dir DIR]`` tears it
down. DIR defaults to /var/lib/redis-autoheal-testhost: one host needs no --dir at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from testhost import alloc
from testhost.files import HostOptions, Layout
from testhost.host import BuildError, TeardownError, TestHost, destroy_index

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

FAULTS: dict[str, Callable[[TestHost, list[str]], object]] = {
    "kill9": lambda h, _a: h.kill9(),
    "terminate": lambda h, _a: h.terminate(),
    "stop": lambda h, _a: h.stop(),
    "start": lambda h, _a: h.start(),
    "restart": lambda h, _a: h.restart(),
    "reset-failed": lambda h, _a: h.reset_failed(),
    "sigstop": lambda h, _a: h.sigstop(),
    "sigcont": lambda h, _a: h.sigcont(),
    "slow-start": lambda h, a: h.slow_start(float(a[0]) if a else 0.0),
    "start-fails": lambda h, a: h.start_fails(not a or a[0] in ("on", "true", "yes", "1")),
    "link-down": lambda h, _a: h.link_down(),
    "link-up": lambda h, _a: h.link_up(),
    "blackhole": lambda h, _a: h.blackhole(),
    "unblackhole": lambda h, _a: h.unblackhole(),
    "change-host-key": lambda h, _a: h.change_host_key(),
}


# Where only root writes (a fixed name under /tmp would be anyone's), and not under /run, which
# the host replaces with a tmpfs of its own.
DEFAULT_DIR = Path("/var/lib/redis-autoheal-testhost")


def _add_dir(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"{what} (default: {DEFAULT_DIR})",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testhost", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build a host and leave it running; print it as JSON")
    _add_dir(up, "the host's work directory, new or empty")
    up.add_argument("--hostname", default="vm3")
    up.add_argument("--rdb", action="store_true", help="the runbook's save points, not save ''")
    up.add_argument("--password", help="requirepass (and protected-mode yes)")
    up.add_argument("--stopped", action="store_true", help="leave redis-server inactive")
    down = sub.add_parser("down", help="tear down the host in DIR")
    _add_dir(down, "the work directory `up` was given")
    status = sub.add_parser("status", help="print the host in DIR and its unit state as JSON")
    _add_dir(status, "the work directory `up` was given")
    fault = sub.add_parser("fault", help="inject a fault into the host in DIR")
    _add_dir(fault, "the work directory `up` was given")
    fault.add_argument("fault", choices=sorted(FAULTS))
    fault.add_argument("args", nargs="*")
    sub.add_parser("gc", help="tear down hosts whose owner process died")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (BuildError, TeardownError, OSError, RuntimeError, TimeoutError) as exc:
        print(f"testhost: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    if args.command == "up":
        if Layout(args.dir).description.exists():
            print(
                f"testhost: a test host is up in {args.dir}: `python -m testhost down` first, "
                "or give another --dir",
                file=sys.stderr,
            )
            return 1
        options = HostOptions(
            hostname=args.hostname,
            rdb=args.rdb,
            password=args.password,
            redis_running=not args.stopped,
        )
        host = TestHost.build(options, workdir=args.dir)
        alloc.set_owner(host.index, host.hostinit_pid)
        print(json.dumps(host.describe(), indent=2))
        return 0
    if args.command == "gc":
        print(json.dumps({"reclaimed": alloc.collect_garbage(destroy_index)}))
        return 0
    if not Layout(args.dir).description.exists():
        print(f"testhost: no test host in {args.dir} (python -m testhost up)", file=sys.stderr)
        return 1
    host = TestHost.load(args.dir)
    if args.command == "down":
        host.teardown()
    elif args.command == "status":
        print(json.dumps(host.describe() | {"unit_state": host.unit_state()}, indent=2))
    else:
        result = FAULTS[args.fault](host, args.args)
        if result is not None:
            print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
