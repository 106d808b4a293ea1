"""One application of a policy: what every rule of it sees.

A ``GateRun`` is made by ``gate.verdict.run_gate`` for each verdict and handed to every
rule function (built-in or a plugin's): the policy, both sides' evidence and the tests
already made. It is the only state of a verdict, so the frozen ``Policy`` stays data
read from YAML, and two verdicts never share a cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecomharness.evaluation.checkpoint_names import is_trained
from ecomharness.evaluation.ledger import latest_ok_records, read_ledger, slim_record
from ecomharness.gate.evidence import Evidence
from ecomharness.gate.policy import Policy, Rule


@dataclass
class GateRun:
    """The policy, the candidate, the baseline (None for rules that need none) and the
    significance tests made so far, keyed by what they depend on (gate/significance.py)."""

    policy: Policy
    candidate: Evidence
    baseline: Evidence | None = None
    tests: dict = field(default_factory=dict)

    def allowed(self, rule: Rule, reason: str) -> bool:
        """Whether the rule or the policy allows this fail-closed reason."""
        return reason in rule.allow or reason in self.policy.allow

    def alpha(self, rule: Rule) -> float:
        """The rule's significance level, else the policy's."""
        return rule.alpha if rule.alpha is not None else self.policy.alpha

    def history(self, task: str, metric: str, side: str = "candidate") -> list[float] | None:
        """The candidate's (or baseline's) run's values of ``task``/``metric`` at its
        trained checkpoints up to that checkpoint, by step (its own last), read from its
        ledger once per run; None when the evidence has no ledger (a results file) or is
        a run's untrained start."""
        key = ("history", side, task, metric)
        if key not in self.tests:
            evidence = self.candidate if side == "candidate" else self.baseline
            trained = evidence is not None and evidence.checkpoint is not None and is_trained(evidence.checkpoint)
            self.tests[key] = _history(evidence, task, metric) if trained else None
        return self.tests[key]


def _history(candidate: Evidence, task: str, metric: str) -> list[float] | None:
    if candidate.ledger is None:
        return None

    def keep(record: dict, offset: int) -> dict:
        found = ((record.get("metrics") or {}).get(task) or {}).get(metric)
        return slim_record(record, offset, metrics=lambda _: {task: {metric: found}} if found else {})

    records = latest_ok_records(read_ledger(candidate.ledger, strict=True, keep=keep))
    points = []
    for record in records:
        later = candidate.step is not None and record.get("step", 0) > candidate.step
        if not is_trained(record["checkpoint"]) or later:
            continue
        value = ((record.get("metrics") or {}).get(task) or {}).get(metric)
        if record["checkpoint"] != candidate.checkpoint and isinstance(value, dict) and value.get("value") is not None:
            points.append(float(value["value"]))
    own = candidate.metrics.get(task, {}).get(metric)
    if own is not None and own.finite:
        points.append(own.value)
    return points
