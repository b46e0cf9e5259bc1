"""The Prometheus exporter: the three health layers of each Redis target, and redis_exporter's
metric families under its names. Its endpoints: the README, "The exporter".

Modules: app (factory, routes, kept connections), views (handlers), state (the config in force,
reload), targets (configured and URL targets, the allowlist), probe (the layers), scrape (the
Redis commands of the performance layer), infometrics (redis_exporter's families), collector
(a probe's families), exposition (text encoding), selfmetrics, cli.
"""
