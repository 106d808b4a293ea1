"""Built-in gate rules: one function per kind, each returning ``Check``s with reasons.

A rule kind is called as ``fn(rule, candidate, baseline, policy)`` and returns a list of
``Check`` (one per matched task). Plugins add kinds through ``ecomharness_gate_rules``.

Statistics: a difference between candidate and baseline is tested with a two-sided
z-test on both standard errors, z = (c - b) / sqrt(se_c^2 + se_b^2). ``max_drop`` with
``alpha`` fails only when the drop exceeds the threshold *and* is significant; when a
stderr is missing the test cannot be made, and the threshold alone decides (stricter,
and said in the reason). ``min_gain`` with ``significant: true`` also requires a
significant gain; without stderrs it fails.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

from ecomharness.gate.evidence import Evidence, Measure
from ecomharness.gate.policy import Policy, Rule


@dataclass
class Check:
    """One rule applied to one task: passed or failed, why, and on what."""

    rule: str
    kind: str
    task: str
    metric: str
    passed: bool
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def z_test(candidate: Measure, baseline: Measure) -> tuple[float, float] | None:
    """``(z, two-sided p)`` for candidate - baseline, or None without both stderrs."""
    if candidate.stderr is None or baseline.stderr is None:
        return None
    se = math.sqrt(candidate.stderr ** 2 + baseline.stderr ** 2)
    diff = candidate.value - baseline.value
    if se == 0:
        return (math.inf if diff > 0 else -math.inf if diff < 0 else 0.0), (0.0 if diff else 1.0)
    z = diff / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _tasks(rule: Rule, *evidence: Evidence) -> list[str]:
    names = sorted({t for e in evidence if e is not None for t in e.metrics})
    matched = [t for t in names if any(fnmatch.fnmatchcase(t, p) for p in rule.tasks)]
    # A plain name that matches nothing is still checked, so that it fails as missing.
    literal = [p for p in rule.tasks if not any(c in p for c in "*?[") and p not in matched]
    return matched + literal


def _allowed(rule: Rule, policy: Policy, reason: str) -> bool:
    return reason in rule.allow or reason in policy.allow


def _closed(rule, task, reason_key, text, policy, inputs=None) -> Check | None:
    """A fail-closed check, or None when the rule or policy allows this reason."""
    if _allowed(rule, policy, reason_key):
        return None
    return Check(rule.name, rule.kind, task, rule.metric, False, f"{text} [fail-closed: {reason_key}]",
                 inputs or {}, {"allow": list(rule.allow) + list(policy.allow)})


def provenance(rule: Rule, task: str, candidate: Evidence, baseline: Evidence | None, policy: Policy) -> Check | None:
    """The fail-closed checks before any comparison; the first failing one, or None."""
    for label, evidence in (("candidate", candidate), ("baseline", baseline)):
        if evidence is None:
            continue
        if task not in evidence.metrics:
            found = _closed(rule, task, "missing", f"task {task!r} is not in the {label} results", policy)
            if found:
                return found
            continue
        if rule.metric not in evidence.metrics[task]:
            known = ", ".join(sorted(evidence.metrics[task])) or "none"
            found = _closed(rule, task, "missing", f"{label} has no metric {rule.metric!r} for {task} (has {known})",
                            policy)
            if found:
                return found
            continue
        if evidence.metrics[task][rule.metric].is_nan:
            found = _closed(rule, task, "nan", f"{label} {task}/{rule.metric} is NaN", policy)
            if found:
                return found
    if baseline is None:
        return None
    for leaf in candidate.leaves(task):
        c_version, b_version = candidate.versions.get(leaf), baseline.versions.get(leaf)
        if c_version != b_version:
            found = _closed(rule, task, "version_mismatch",
                            f"task {leaf} version {c_version!r} in the candidate, {b_version!r} in the baseline", policy)
            if found:
                return found
        c_source, b_source = candidate.data_sources.get(leaf), baseline.data_sources.get(leaf)
        if c_source is None or b_source is None:
            side = "candidate" if c_source is None else "baseline"
            found = _closed(rule, task, "unknown_source",
                            f"the {side} records no data source for {leaf} (evaluate with `ecomharness eval` or training)",
                            policy)
            if found:
                return found
        elif c_source.get("fingerprint") != b_source.get("fingerprint"):
            found = _closed(rule, task, "data_mismatch",
                            f"{leaf} was scored on different data: {c_source.get('source')} "
                            f"({c_source.get('fingerprint')}) vs {b_source.get('source')} ({b_source.get('fingerprint')})",
                            policy)
            if found:
                return found
    return None


def _measures(rule, task, candidate, baseline):
    c = candidate.metrics.get(task, {}).get(rule.metric)
    b = baseline.metrics.get(task, {}).get(rule.metric) if baseline is not None else None
    return c, b


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def rule_min(rule: Rule, candidate: Evidence, baseline: Evidence | None, policy: Policy) -> list[Check]:
    """Absolute floor: the candidate's metric must be at least the threshold."""
    checks = []
    for task in _tasks(rule, candidate):
        failed = provenance(rule, task, candidate, None, policy)
        c, _ = _measures(rule, task, candidate, None)
        if failed or c is None:
            checks.append(failed or Check(rule.name, rule.kind, task, rule.metric, True, "allowed: missing"))
            continue
        floor = rule.threshold.of(None)
        passed = c.value >= floor
        checks.append(Check(rule.name, rule.kind, task, rule.metric, passed,
                            f"{task} {rule.metric} {_fmt(c.value)} {'>=' if passed else '<'} floor {floor:g}",
                            {"candidate": c.value, "candidate_stderr": c.stderr}, {"min": floor}))
    return checks


def _compare(rule: Rule, candidate: Evidence, baseline: Evidence | None, policy: Policy, gain: bool) -> list[Check]:
    checks = []
    if baseline is None:
        return [Check(rule.name, rule.kind, ", ".join(rule.tasks), rule.metric, False,
                      "this rule compares with a baseline, and none was given [fail-closed: missing]")]
    alpha = rule.alpha if rule.alpha is not None else policy.alpha
    for task in _tasks(rule, candidate, baseline):
        failed = provenance(rule, task, candidate, baseline, policy)
        c, b = _measures(rule, task, candidate, baseline)
        if failed or c is None or b is None:
            checks.append(failed or Check(rule.name, rule.kind, task, rule.metric, True, "allowed: missing"))
            continue
        amount = rule.threshold.of(b.value)
        diff = c.value - b.value
        test = z_test(c, b)
        inputs = {"candidate": c.value, "candidate_stderr": c.stderr, "baseline": b.value,
                  "baseline_stderr": b.stderr, "difference": diff}
        if test is not None:
            inputs.update(z=test[0], p=test[1])
        settings = {"threshold": str(rule.threshold), "threshold_abs": amount}
        head = f"{task} {rule.metric} {_fmt(b.value)} -> {_fmt(c.value)} ({diff:+.4f})"
        if gain:
            settings["significant"] = rule.significant
            if rule.significant:
                settings["alpha"] = alpha
            if diff < amount:
                passed, why = False, f"gain {diff:+.4f} is below the required {amount:+.4f}"
            elif rule.significant and test is None:
                passed, why = False, "a significant gain is required but a stderr is missing"
            elif rule.significant and test[1] >= alpha:
                passed, why = False, f"gain not significant (p={test[1]:.3g} >= alpha {alpha:g})"
            else:
                passed = True
                why = f"gain {diff:+.4f} >= {amount:+.4f}" + (f", significant (p={test[1]:.3g})" if rule.significant else "")
        else:
            use_alpha = rule.alpha is not None
            settings["alpha"] = alpha if use_alpha else None
            drop = -diff
            if drop <= amount:
                passed, why = True, f"drop {drop:+.4f} within the allowed {amount:.4f}"
            elif use_alpha and test is not None and test[1] >= alpha:
                passed, why = True, f"drop {drop:+.4f} exceeds {amount:.4f} but is not significant (p={test[1]:.3g} >= {alpha:g})"
            else:
                passed = False
                why = f"drop {drop:+.4f} exceeds the allowed {amount:.4f}"
                if use_alpha:
                    why += f" and is significant (p={test[1]:.3g} < {alpha:g})" if test else " (no stderr: threshold applied without a significance test)"
        checks.append(Check(rule.name, rule.kind, task, rule.metric, passed, f"{head}: {why}", inputs, settings))
    return checks


def rule_max_drop(rule: Rule, candidate: Evidence, baseline: Evidence | None, policy: Policy) -> list[Check]:
    """Allowed drop against the baseline (absolute or relative), optionally significance-tested."""
    return _compare(rule, candidate, baseline, policy, gain=False)


def rule_min_gain(rule: Rule, candidate: Evidence, baseline: Evidence | None, policy: Policy) -> list[Check]:
    """Required gain over the baseline, optionally required to be significant."""
    return _compare(rule, candidate, baseline, policy, gain=True)


def rule_joint(rule: Rule, candidate: Evidence, baseline: Evidence | None, policy: Policy) -> list[Check]:
    """All parts must pass together, e.g. "domain gains at least X while general drops at
    most Y" (EcomGPT-CT's forgetting check). One check, listing every part's outcome."""
    parts = []
    for part in rule.parts:
        part = part if not rule.allow else _with_allow(part, rule.allow)
        parts.extend(rule_function(part.kind)(part, candidate, baseline, policy))
    passed = bool(parts) and all(p.passed for p in parts)
    failing = [p for p in parts if not p.passed]
    reason = ("all parts pass: " if passed else "failing: ") + "; ".join(p.reason for p in (parts if passed else failing))
    return [Check(rule.name, rule.kind, " & ".join(sorted({p.task for p in parts})), "+".join(sorted({p.metric for p in parts})),
                  passed, reason, {"parts": [p.__dict__ for p in parts]}, {})]


def _with_allow(part: Rule, allow: tuple[str, ...]) -> Rule:
    import dataclasses

    return dataclasses.replace(part, allow=tuple(set(part.allow) | set(allow)))


def rule_function(kind: str):
    """The function of a rule kind, built-in or a plugin's (``ecomharness_gate_rules``)."""
    from ecomharness.registry import gate_rules

    return gate_rules.get(kind)
