"""`python -m remediator`: the same as `redis-autoheal remediator`."""

from __future__ import annotations

import sys

from redis_autoheal.cli import main

if __name__ == "__main__":
    sys.exit(main(["remediator", *sys.argv[1:]]))
