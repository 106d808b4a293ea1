"""Built-in gate rules: one function per kind, each returning ``Check``s with reasons.

A rule kind is called as ``fn(rule, candidate, baseline, policy)`` and returns a list of
``Check`` (one per matched task). Plugins add kinds through ``ecomharness_gate_rules``.

Statistics: a difference between candidate and baseline is tested on paired evidence,
both sides' per-document scores matched by document (``gate/paired.py``: McNemar for
binary metrics, a paired bootstrap otherwise, stratified for groups). Where that cannot
be done the rule fails closed (``unpaired``), unless the policy allows ``unpaired``:
then the two-sided z-test on both standard errors, z = (c - b) / sqrt(se_c^2 + se_b^2),
decides and the reason says so. ``max_drop`` with ``alpha`` fails only when the drop
exceeds the threshold *and* is significant; when no test can be made the threshold
alone decides (stricter, and said in the reason). ``min_gain`` with ``significant:
true`` also requires a significant gain; without a test it fails.
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
    absent = False
    for label, evidence in (("candidate", candidate), ("baseline", baseline)):
        if evidence is None:
            continue
        if task not in evidence.metrics:
            found = _closed(rule, task, "missing", f"task {task!r} is not in the {label} results", policy)
            if found:
                return found
            absent = True
            continue
        if rule.metric not in evidence.metrics[task]:
            known = ", ".join(sorted(evidence.metrics[task])) or "none"
            found = _closed(rule, task, "missing", f"{label} has no metric {rule.metric!r} for {task} (has {known})",
                            policy)
            if found:
                return found
            absent = True
            continue
        measure = evidence.metrics[task][rule.metric]
        if not measure.finite:
            found = _closed(rule, task, "nan", f"{label} {task}/{rule.metric} is {measure.value} (not finite)", policy)
            if found:
                return found
    if baseline is None or absent:  # an allowed missing score: nothing to compare, whatever its data
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
        unsourced = c_source is None or b_source is None
        by_hash = unsourced and lm_eval_paired(leaf, candidate, baseline) is not None
        if unsourced and not by_hash:
            side = "candidate" if c_source is None else "baseline"
            found = _closed(rule, task, "unknown_source",
                            f"the {side} records no data source for {leaf} (evaluate with `ecomharness eval` or "
                            f"training, or run lm-eval with --log_samples on both sides)", policy)
            if found:
                return found
        c_identity, b_identity = candidate.identity(leaf), baseline.identity(leaf)
        if unsourced:  # compare what both can say: lm-eval's own records
            c_lm, b_lm = candidate.lm_eval_identity.get(leaf, {}), baseline.lm_eval_identity.get(leaf, {})
            # A task hash exists only where samples were logged: compared where both have it.
            shared = [k for k in LM_EVAL_FIELDS if by_hash and k in c_lm and k in b_lm]
            c_identity = {**{k: v for k, v in c_identity.items() if k in UNSOURCED_FIELDS},
                          **{k: c_lm[k] for k in shared}}
            b_identity = {**{k: v for k, v in b_identity.items() if k in UNSOURCED_FIELDS},
                          **{k: b_lm[k] for k in shared}}
        differs = identity_difference(c_identity, b_identity)
        if differs:
            key, c_value, b_value = differs
            detail = f"{key} is {c_value!r} in the candidate ({(c_source or {}).get('source', candidate.label)}), " \
                     f"{b_value!r} in the baseline ({(b_source or {}).get('source', baseline.label)})"
            if key == "task_hash":
                detail = f"lm-eval's task hash differs: {sample_difference(leaf, candidate, baseline)}"
            elif key == "config_hash":
                detail = "lm-eval recorded a different task config on the two sides (prompt, metric or generation settings)"
            found = _closed(rule, task, "data_mismatch", f"{leaf} was scored on different documents: {detail}", policy)
            if found:
                return found
    return None


def lm_eval_paired(leaf: str, candidate: Evidence, baseline: Evidence) -> int | None:
    """How many documents of ``leaf`` pair one to one by lm-eval's ``doc_hash`` when both
    sides' identity can be taken from lm-eval's records (each records the task's config
    and has per-document scores for it); None otherwise."""
    if leaf not in candidate.lm_eval_identity or leaf not in baseline.lm_eval_identity:
        return None
    tables = [e.per_document for e in (candidate, baseline)]
    if any(t is None or leaf not in t["tasks"] for t in tables):
        return None
    c_ids, b_ids = (t["tasks"][leaf]["doc_ids"] for t in tables)
    if not c_ids or len(c_ids) != len(b_ids) or set(c_ids) != set(b_ids):
        return None
    return len(c_ids)


def sample_difference(leaf: str, candidate: Evidence, baseline: Evidence) -> str:
    """The first paired document whose position (``doc_id``) or prompt differs between two
    lm-eval sample logs, in words; lm-eval's task hash covers both and the targets."""
    c_entry, b_entry = candidate.per_document["tasks"][leaf], baseline.per_document["tasks"][leaf]
    b_at = {doc: i for i, doc in enumerate(b_entry["doc_ids"])}
    for i, doc in enumerate(c_entry["doc_ids"]):
        j = b_at[doc]
        c_index, b_index = (e.get("doc_index") or [None] * len(e["doc_ids"]) for e in (c_entry, b_entry))
        if c_index[i] != b_index[j]:
            return f"document {doc[:12]}... is doc_id {c_index[i]} in the candidate and {b_index[j]} in the baseline"
        c_prompt, b_prompt = (e.get("prompt_hashes") or [None] * len(e["doc_ids"]) for e in (c_entry, b_entry))
        if c_prompt[i] != b_prompt[j]:
            return f"document {doc[:12]}... (doc_id {c_index[i]}) was given a different prompt"
    return "the documents and prompts pair, so a target differs"


def identity_basis(task: str, candidate: Evidence, baseline: Evidence) -> str | None:
    """Words for a check whose identity came from lm-eval's records rather than our data
    sources (a leaf without a data source on a side, paired by document hash); None when
    every leaf has data sources on both sides."""
    paired, hashed = [], True
    for leaf in candidate.leaves(task):
        if candidate.data_sources.get(leaf) is not None and baseline.data_sources.get(leaf) is not None:
            continue
        n = lm_eval_paired(leaf, candidate, baseline)
        if n is None:
            return None
        paired.append(n)
        hashed &= all("task_hash" in e.lm_eval_identity.get(leaf, {}) for e in (candidate, baseline))
    if not paired:
        return None
    # A task hash exists only where lm-eval logged samples: say what was compared.
    fields = "task hash, config" if hashed else "config"
    return (f"identity taken from lm-eval's records ({fields}, version, n-shot, documents evaluated) and "
            f"{sum(paired)} documents paired by doc_hash")


# Identity fields lm-eval itself records, so results without our data sources have them.
UNSOURCED_FIELDS = ("evaluated", "n_shot")
# What lm-eval records about a task's documents and config (evaluation/lm_eval_samples.py),
# compared when both sides' documents pair by hash.
LM_EVAL_FIELDS = ("task_hash", "config_hash")


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
    """Absolute floor: the candidate's metric must be at least the threshold (at most,
    for ``direction: lower``)."""
    checks = []
    for task in _tasks(rule, candidate):
        failed = provenance(rule, task, candidate, None, policy)
        c, _ = _measures(rule, task, candidate, None)
        if failed or c is None or not c.finite:
            checks.append(failed or _allowed_check(rule, task, c))
            continue
        bound = rule.threshold.of(None)
        if rule.direction == "lower":  # a ceiling: bits per byte, perplexity
            passed = c.value <= bound
            reason = f"{task} {rule.metric} {_fmt(c.value)} {'<=' if passed else '>'} ceiling {bound:g}"
        else:
            passed = c.value >= bound
            reason = f"{task} {rule.metric} {_fmt(c.value)} {'>=' if passed else '<'} floor {bound:g}"
        checks.append(Check(rule.name, rule.kind, task, rule.metric, passed, reason,
                            {"candidate": c.value, "candidate_stderr": c.stderr},
                            {"max" if rule.direction == "lower" else "min": bound}))
    return checks


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


def _unpaired_allowed(rule: Rule, policy: Policy) -> bool:
    return _allowed(rule, policy, "unpaired")


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


def significance(rule: Rule, task: str, c: Measure, b: Measure, candidate: Evidence, baseline: Evidence,
                 policy: Policy, alpha: float) -> Significance:
    """Test candidate against baseline on ``task``: paired when both sides' per-document
    scores pair up (``gate/pairing.py``, ``gate/paired.py``); otherwise the unpaired
    z-test, only where the rule or policy allows ``unpaired``; otherwise no test."""
    from ecomharness.gate.pairing import Unpaired, paired_result

    allowed = _unpaired_allowed(rule, policy)
    key = (candidate.label, baseline.label, task, rule.metric, alpha, allowed)
    if key in policy.test_cache:
        return policy.test_cache[key]
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
    policy.test_cache[key] = outcome
    return outcome


def _describe(test: Significance, adjusted: float | None) -> str:
    """How a check's test reads in its reason: the test, its own p (and the
    Holm-adjusted p that decided, when the policy corrects), n, the interval, the
    detectable effect."""
    if test.test is None:
        return ""
    parts = [f"{test.test}, p={test.p:.3g}" + (f", Holm-adjusted p={adjusted:.3g}" if adjusted is not None else "")]
    details = test.details
    if "n" in details:
        parts.append(f"n={details['n']}")
    if "ci_low" in details:
        level = round(100 * details.get("ci_level", 0.95), 1)
        parts.append(f"{level:g}% CI [{details['ci_low']:+.4f}, {details['ci_high']:+.4f}]")
    if test.mde is not None:
        parts.append(f"a difference smaller than {test.mde:.4f} could not have been detected (80% power)")
    if test.unpaired_because:
        parts.append(f"unpaired: {test.unpaired_because}")
    return "; ".join(parts)


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
        # ``diff`` is the change in quality: for a lower-is-better metric (bits per
        # byte, perplexity) a rise is a drop.
        lower = rule.direction == "lower"
        diff = (b.value - c.value) if lower else (c.value - b.value)
        inputs = {"candidate": c.value, "candidate_stderr": c.stderr, "baseline": b.value,
                  "baseline_stderr": b.stderr, "difference": c.value - b.value}
        settings = {"threshold": str(rule.threshold), "threshold_abs": amount}
        uses_test = (gain and rule.significant) or (not gain and rule.alpha is not None) \
            or rule.max_detectable_effect is not None
        test = significance(rule, task, c, b, candidate, baseline, policy, alpha) if uses_test else None
        p = None
        if test is not None:
            p = policy.adjusted_p.get((rule.name, task), test.p)
            inputs.update({"test": test.test, "p": test.p, **test.details})
            if test.unpaired_because:
                inputs["unpaired_because"] = test.unpaired_because
            if (rule.name, task) in policy.adjusted_p:
                inputs["p_holm"] = p
        basis = identity_basis(task, candidate, baseline)
        if basis:
            inputs["identity"] = basis
        head = f"{task} {rule.metric} {_fmt(b.value)} -> {_fmt(c.value)} ({c.value - b.value:+.4f}" \
            + (", lower is better)" if lower else ")")
        holm = (rule.name, task) in policy.adjusted_p
        shown = _describe(test, p if holm else None) if test is not None and p is not None else ""
        p_name = "Holm-adjusted p" if holm else "p"
        no_test = test.why_none if test is not None and test.why_none else "a stderr is missing or not finite"
        if gain:
            settings["significant"] = rule.significant
            if rule.significant:
                settings["alpha"] = alpha
            if diff < amount:
                passed, why = False, f"gain {diff:+.4f} is below the required {amount:+.4f}"
            elif rule.significant and p is None:
                passed, why = False, f"a significant gain is required but {no_test}"
            elif rule.significant and p >= alpha:
                passed, why = False, f"gain not significant ({p_name}={p:.3g} >= alpha {alpha:g}; {shown})"
            else:
                passed = True
                why = f"gain {diff:+.4f} >= {amount:+.4f}" + (f", significant ({shown})" if rule.significant else "")
        else:
            use_alpha = rule.alpha is not None
            settings["alpha"] = alpha if use_alpha else None
            drop = -diff
            if drop <= amount:
                passed, why = True, f"drop {drop:+.4f} within the allowed {amount:.4f}"
                if use_alpha and shown:
                    why += f" ({shown})"
            elif use_alpha and p is not None and p >= alpha:
                passed, why = True, f"drop {drop:+.4f} exceeds {amount:.4f} but is not significant ({p_name}={p:.3g} >= {alpha:g}; {shown})"
            else:
                passed = False
                why = f"drop {drop:+.4f} exceeds the allowed {amount:.4f}"
                if use_alpha:
                    why += f" and is significant ({p_name}={p:.3g} < {alpha:g}; {shown})" if p is not None else \
                        f" ({no_test}: threshold applied without a significance test)"
        if passed and rule.max_detectable_effect is not None:
            settings["max_detectable_effect"] = rule.max_detectable_effect
            if test is None or test.mde is None:
                passed = False
                why += (f"; the detectable effect cannot be computed without a paired test "
                        f"({test.unpaired_because if test is not None and test.unpaired_because else 'no per-document scores'})"
                        " [fail-closed: underpowered]")
            elif test.mde > rule.max_detectable_effect:
                passed = False
                why += (f"; underpowered: on these documents a difference smaller than {test.mde:.4f} could not "
                        f"have been detected, above the required {rule.max_detectable_effect:g} [fail-closed: underpowered]")
        if basis:
            why += f"; {basis}"
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
