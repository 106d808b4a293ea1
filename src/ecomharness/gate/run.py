"""One application of a policy: what every rule of it sees.

A ``GateRun`` is made by ``gate.verdict.run_gate`` for each verdict and handed to every
rule function (built-in or a plugin's): the policy, both sides' evidence and the tests
already made. It is the only state of a verdict, so the frozen ``Policy`` stays data
read from YAML, and two verdicts never share a cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
