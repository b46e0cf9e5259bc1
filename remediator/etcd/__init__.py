"""Remediator replicas acting as one through an etcd cluster (`coordination.backend: etcd`).

`gateway` talks to etcd's v3 JSON gateway, `breaker` keeps every target's circuit breaker in
one etcd key, `coordination` holds targets for recoveries across replicas (the claims, their
lease and fence, the per-target duplicate memory).
"""
