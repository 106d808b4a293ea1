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


def _tasks(rule: Rule, *evidence: Evidence) -> list[str]:
    names = sorted({t for e in evidence if e is not None for t in e.metrics})
    matched = [t for t in names if any(fnmatch.fnmatchcase(t, p) for p in rule.tasks)]
    # A name or glob that matches nothing is still checked, so that it fails as missing:
    # a typo in a policy must not quietly remove its check.
    unmatched = [p for p in rule.tasks if not any(fnmatch.fnmatchcase(t, p) for t in names)]
    return matched + unmatched


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
        measure = evidence.metrics[task][rule.metric]
        if not measure.finite:
            found = _closed(rule, task, "nan", f"{label} {task}/{rule.metric} is {measure.value} (not finite)", policy)
            if found:
                return found
    if baseline is None:
        return None
    c_leaves, b_leaves = sorted(candidate.leaves(task)), sorted(baseline.leaves(task))
    if c_leaves != b_leaves:
        only_c = ", ".join(sorted(set(c_leaves) - set(b_leaves))) or "none"
        only_b = ", ".join(sorted(set(b_leaves) - set(c_leaves))) or "none"
        found = _closed(rule, task, "data_mismatch", f"group {task} has different members: only in the candidate: "
                        f"{only_c}; only in the baseline: {only_b}", policy)
        if found:
            return found
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
        c_identity, b_identity = candidate.identity(leaf), baseline.identity(leaf)
        if c_source is None or b_source is None:  # unknown_source allowed: compare what both can say
            c_identity = {k: v for k, v in c_identity.items() if k in UNSOURCED_FIELDS}
            b_identity = {k: v for k, v in b_identity.items() if k in UNSOURCED_FIELDS}
        differs = identity_difference(c_identity, b_identity)
        if differs:
            key, c_value, b_value = differs
            found = _closed(rule, task, "data_mismatch",
                            f"{leaf} was scored on different documents: {key} is {c_value!r} in the candidate "
                            f"({(c_source or {}).get('source', candidate.label)}), {b_value!r} in the baseline "
                            f"({(b_source or {}).get('source', baseline.label)})", policy)
            if found:
                return found
    return None


# Identity fields lm-eval itself records, so results without our data sources have them.
UNSOURCED_FIELDS = ("evaluated", "n_shot")


def identity_difference(candidate: dict, baseline: dict) -> tuple[str, Any, Any] | None:
    """The first field (by name) whose value differs between two leaf identities; a
    field recorded on one side only differs too (shown as None on the other)."""
    for key in sorted(set(candidate) | set(baseline)):
        if candidate.get(key) != baseline.get(key):
            return key, candidate.get(key), baseline.get(key)
    return None


def _measures(rule, task, candidate, baseline):
    c = candidate.metrics.get(task, {}).get(rule.metric)
    b = baseline.metrics.get(task, {}).get(rule.metric) if baseline is not None else None
    return c, b


def _allowed_check(rule: Rule, task: str, *measures: Measure | None) -> Check:
    """A passing check for a task the policy allowed to be missing or not finite: it is
    not compared (a NaN compares false both ways, which would decide by accident)."""
    reason = "missing" if any(m is None for m in measures) else "nan"
    return Check(rule.name, rule.kind, task, rule.metric, True, f"allowed: {reason} (not compared)")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def rule_min(rule: Rule, candidate: Evidence, baseline: Evidence | None, policy: Policy) -> list[Check]:
    """Absolute floor: the candidate's metric must be at least the threshold."""
    checks = []
    for task in _tasks(rule, candidate):
        failed = provenance(rule, task, candidate, None, policy)
        c, _ = _measures(rule, task, candidate, None)
        if failed or c is None or not c.finite:
            checks.append(failed or _allowed_check(rule, task, c))
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
        if failed or c is None or b is None or not (c.finite and b.finite):
            checks.append(failed or _allowed_check(rule, task, c, b))
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
                passed, why = False, "a significant gain is required but a stderr is missing or not finite"
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
                    why += f" and is significant (p={test[1]:.3g} < {alpha:g})" if test else " (no usable stderr: threshold applied without a significance test)"
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
