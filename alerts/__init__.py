"""Alert rules, Prometheus and Alertmanager configuration for redis-autoheal (see README.md).

A package only so that `python -m alerts.generator` runs the rules generator.
"""
