"""`python -m exporter --config FILE`: the same as `redis-autoheal exporter --config FILE`."""

import sys

from redis_autoheal.cli import main

sys.exit(main(["exporter", *sys.argv[1:]]))
