"""`redis-autoheal init`: from nothing to a config that checks, on the way to one's own hosts."""
