"""The Prometheus exporter: the runbook's three health layers of each configured Redis target.

    GET /probe?target=NAME&module=connectivity|systemd|performance|all
    GET /metrics     the exporter's own metrics
    GET /healthz     200 while it serves

Modules: app (factory, routes, kept connections), views (handlers), probe (the layers),
collector (metric families), exposition (text encoding), selfmetrics, cli.
"""
