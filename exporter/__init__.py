"""The Prometheus exporter: the runbook's three health layers of each Redis target, and
redis_exporter's metric families (a superset of its output, under its names).

    GET  /probe?target=NAME&module=connectivity|systemd|performance|all
    GET  /probe?target=redis://HOST:PORT     a URL that exporter.allowed_targets admits
    GET  /scrape?target=...                  the same, under redis_exporter's path
    GET  /metrics     the exporter's own metrics
    GET  /healthz     200 while it serves
    POST /-/reload    read the config file again (as SIGHUP)

Modules: app (factory, routes, kept connections), views (handlers), state (the config in force,
reload), targets (configured and URL targets, the allowlist), probe (the layers), scrape (the
Redis commands of the performance layer), infometrics (redis_exporter's families), collector
(a probe's families), exposition (text encoding), selfmetrics, cli.
"""
