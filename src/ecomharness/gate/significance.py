"""Where significance is decided: the test behind every comparing gate rule.

A difference between candidate and baseline is tested on paired evidence, both sides'
per-document scores matched by document (``gate/pairing.py``; ``gate/paired.py``:
McNemar for binary metrics, a paired bootstrap otherwise, stratified for groups). Where
that cannot be done the rule fails closed (``unpaired``), unless the policy allows
``unpaired``: then the two-sided z-test on both standard errors, z = (c - b) /
sqrt(se_c^2 + se_b^2), decides and the reason says so. With ``correction: holm`` the
p-values of every check that decides on one are adjusted together, once, by
``holm_adjusted`` (gate/verdict.py calls it between measuring and deciding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ecomharness.gate.evidence import Measure
from ecomharness.gate.paired import holm
from ecomharness.gate.pairing import Unpaired, paired_result
from ecomharness.gate.policy import Rule
from ecomharness.gate.run import GateRun


def z_test(candidate: Measure, baseline: Measure) -> tuple[float, float] | None:
    """``(z, two-sided p)`` for candidate - baseline, or None without two usable stderrs
    (missing, NaN, infinite or negative: no test can be made, and a rule that needs one
    fails closed rather than reading ``p=nan`` as "not significant")."""
    se_c, se_b = candidate.usable_stderr, baseline.usable_stderr
    if se_c is None or se_b is None:
        return None
    se = math.sqrt(se_c ** 2 + se_b ** 2)
    diff = candidate.value - baseline.value
    if se == 0:
        return (math.inf if diff > 0 else -math.inf if diff < 0 else 0.0), (0.0 if diff else 1.0)
    z = diff / se
    return z, math.erfc(abs(z) / math.sqrt(2))


@dataclass
class Significance:
    """The test a check relied on: a paired test, the unpaired z-test (allowed), or
    none (``p`` None) with the reason no test could be made."""

    test: str | None
    p: float | None
    details: dict[str, Any] = field(default_factory=dict)
    unpaired_because: str | None = None
    mde: float | None = None
    why_none: str = ""  # when p is None: why no test was made


def _intersection_z(values: tuple[list, list]) -> tuple[float, float, int] | None:
    """The unpaired z-test of two per-document means on the documents both sides share."""
    c = [v for v in values[0] if v is not None]
    b = [v for v in values[1] if v is not None]
    if len(c) < 2 or len(b) < 2:
        return None
    mean_c, mean_b = sum(c) / len(c), sum(b) / len(b)
    var_c = sum((x - mean_c) ** 2 for x in c) / (len(c) - 1) / len(c)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1) / len(b)
    found = z_test(Measure(mean_c, math.sqrt(var_c)), Measure(mean_b, math.sqrt(var_b)))
    return None if found is None else (found[0], found[1], len(c))


def significance(gate: GateRun, rule: Rule, task: str, c: Measure, b: Measure) -> Significance:
    """Test candidate against baseline on ``task`` at the rule's alpha: paired when both
    sides' per-document scores pair up (``gate/pairing.py``, ``gate/paired.py``);
    otherwise the unpaired z-test, only where the rule or policy allows ``unpaired``;
    otherwise no test. Made once per run for what it depends on, however many rules ask."""
    candidate, baseline, policy = gate.candidate, gate.baseline, gate.policy
    alpha = gate.alpha(rule)
    allowed = gate.allowed(rule, "unpaired")
    key = (task, rule.metric, alpha, allowed)
    if key in gate.tests:
        return gate.tests[key]
    try:
        result = paired_result(task, rule.metric, candidate, baseline, alpha, policy.resamples, policy.seed)
        outcome = Significance(result.test, result.p, result.as_dict(), mde=result.mde)
    except Unpaired as exc:
        if not allowed:
            outcome = Significance(None, None, unpaired_because=str(exc),
                                   why_none=f"no paired test: {exc} [fail-closed: unpaired]")
        elif exc.intersection is not None:
            z = _intersection_z(exc.intersection)
            outcome = Significance("unpaired-z-intersection" if z else None, None if z is None else z[1],
                                   {} if z is None else {"z": z[0], "n": z[2]}, unpaired_because=str(exc),
                                   why_none="fewer than two shared documents")
        else:
            z = z_test(c, b)
            outcome = Significance(None if z is None else "unpaired-z", None if z is None else z[1],
                                   {} if z is None else {"z": z[0]}, unpaired_because=str(exc),
                                   why_none="a stderr is missing or not finite")
    gate.tests[key] = outcome
    return outcome


def describe(test: Significance, adjusted: float | None) -> str:
    """How a check's test reads in its reason: the test, its own p (and the
    Holm-adjusted p that decided, when the policy corrects), n, the interval, the
    detectable effect."""
    if test.test is None:
        return ""
    parts = [f"{test.test}, p={test.p:.3g}" + (f", Holm-adjusted p={adjusted:.3g}" if adjusted is not None else "")]
    details = test.details
    if "n" in details:
        parts.append(f"n={details['n']}" + (f" in {details['clusters']} clusters" if "clusters" in details else ""))
    if "ci_low" in details:
        level = round(100 * details.get("ci_level", 0.95), 1)
        parts.append(f"{level:g}% CI [{details['ci_low']:+.4f}, {details['ci_high']:+.4f}]")
    if test.mde is not None:
        parts.append(f"a difference smaller than {test.mde:.4f} could not have been detected (80% power)")
    if test.unpaired_because:
        parts.append(f"unpaired: {test.unpaired_because}")
    return "; ".join(parts)


def holm_adjusted(p_values: dict[int, float]) -> dict[int, float]:
    """Holm-adjusted p-values for the tests that decide checks, keyed as given (one
    family: every such test of the run, whichever rule made it)."""
    keys = list(p_values)
    return dict(zip(keys, holm([p_values[k] for k in keys])))
