"""How long a test host takes to build and to tear down; prints figures (needs root).

    sudo .venv/bin/python bench/testhost_bench.py [--runs 5]

Each run builds one host (TestHost.build(): network namespace, sshd, sudo, Redis active) and
tears it down, one after the other. Not a test: the suite does not assert speed (a loaded
machine is slower, not wrong); this is where the time is measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testhost import TestHost  # noqa: E402 -- after the path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, choices=range(1, 101), metavar="1-100")
    runs = parser.parse_args().runs
    build, teardown = [], []
    for _ in range(runs):
        started = time.monotonic()
        host = TestHost.build()
        build.append(time.monotonic() - started)
        started = time.monotonic()
        host.teardown()
        teardown.append(time.monotonic() - started)
    for what, times in (("build", build), ("teardown", teardown)):
        print(
            f"{what:9} median {statistics.median(times):.2f} s"
            f"  min {min(times):.2f} s  max {max(times):.2f} s  ({runs} runs)"
        )


if __name__ == "__main__":
    main()
