"""The chaos campaign: seeded sequences of faults against the real test host and remediator,
checked afterwards against the ground truth.

- `chaos.plan`: the seeded generator of sequences (faults and Alertmanager's behaviour);
- `chaos.alertsim`: Alertmanager as the remediator sees it, driven by what the host does;
- `chaos.runner`: runs one sequence and collects the ground truth;
- `chaos.invariants`: the invariants I1-I7, pure functions of the ground truth;
- `chaos.campaign`: N sequences and their table (bench/chaos.py prints it).
"""
