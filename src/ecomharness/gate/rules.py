"""Built-in gate rules: one function per kind, measuring and deciding with reasons.

A rule kind is called as ``fn(rule, gate)`` with the rule and the run (``gate.run.
GateRun``: policy, candidate, baseline, tests made) and returns a list whose items are
``Check`` s (decided: a floor, a fail-closed reason) or measurements with ``tests()`` and
``decide(adjusted)`` (``Comparison``, ``JointOutcome``). The verdict (gate/verdict.py)
collects every measurement's tests, adjusts their p-values once (Holm, when the policy
says so) and decides them. Plugins add kinds through ``ecomharness_gate_rules``.

The comparing kinds: ``max_drop`` with ``alpha`` fails only when the drop exceeds the
threshold *and* is significant; when no test can be made the threshold alone decides
(stricter, and said in the reason). ``min_gain`` with ``significant: true`` also
requires a significant gain; without a test it fails. The tests themselves are made in
gate/significance.py.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomharness.evaluation.noise import relative_std, signal, signal_to_noise
from ecomharness.gate.evidence import Evidence, Measure
from ecomharness.gate.policy import Policy, Rule
from ecomharness.gate.run import GateRun
from ecomharness.gate.significance import Significance, describe, significance
from ecomharness.registry import gate_rules


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
    for leaf in candidate.leaves(task):
        entry = candidate.contamination.get(leaf)
        if entry and entry["share"] > policy.max_contamination:
            found = _closed(rule, task, "contaminated", f"{leaf}: {_contamination_words(entry)}, above "
                            f"max_contamination {policy.max_contamination:g}", policy)
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


def _contamination_words(entry: dict) -> str:
    return (f"{entry.get('found')} of {entry.get('documents')} test documents ({entry['share']:.1%}) are in the "
            f"candidate's training data (sources: {', '.join(entry.get('sources') or []) or 'unknown'})")


def contamination_note(task: str, candidate: Evidence, policy: Policy) -> str | None:
    """Words for a check that passed over contamination the rule or policy allows."""
    over = [(leaf, candidate.contamination[leaf]) for leaf in candidate.leaves(task)
            if leaf in candidate.contamination and candidate.contamination[leaf]["share"] > policy.max_contamination]
    if not over:
        return None
    return "contamination allowed: " + "; ".join(f"{leaf}: {_contamination_words(e)}" for leaf, e in over)


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


def rule_min(rule: Rule, gate: GateRun) -> list[Check]:
    """Absolute floor: the candidate's metric must be at least the threshold (at most,
    for ``direction: lower``)."""
    checks = []
    candidate = gate.candidate
    for task in _tasks(rule, candidate):
        failed = provenance(rule, task, candidate, None, gate.policy)
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
        note = contamination_note(task, candidate, gate.policy)
        if note:
            reason += f"; {note}"
        checks.append(Check(rule.name, rule.kind, task, rule.metric, passed, reason,
                            {"candidate": c.value, "candidate_stderr": c.stderr},
                            {"max" if rule.direction == "lower" else "min": bound}))
    return checks


@dataclass
class Comparison:
    """What a ``max_drop`` or ``min_gain`` rule measured on one task, before any decision:
    both sides' values, the threshold in the metric's units, and the test (None when the
    rule asks for none). ``decide`` turns it into a ``Check`` once the run knows every
    test's Holm-adjusted p."""

    rule: Rule
    task: str
    gain: bool  # min_gain (True) or max_drop
    candidate: Measure
    baseline: Measure
    amount: float
    alpha: float
    test: Significance | None
    basis: str | None  # where the identity came from, when not from our data sources
    contamination: str | None = None  # contamination the rule or policy allowed, in words
    noise: float | None = None  # the candidate run's checkpoint noise (std of its last N), when the rule asks

    @property
    def change(self) -> float:
        """The change in quality: for a lower-is-better metric (bits per byte,
        perplexity) a rise is a drop."""
        c, b = self.candidate.value, self.baseline.value
        return (b - c) if self.rule.direction == "lower" else (c - b)

    def tests(self) -> list[Comparison]:
        """Itself when its decision rests on a p-value (so Holm adjusts it), else nothing."""
        rests_on_p = self.rule.significant if self.gain else self.rule.alpha is not None
        return [self] if rests_on_p and self.test is not None and self.test.p is not None else []

    allowed_noise: bool = False  # the rule or policy allows an unknown checkpoint noise
    # (snr, signal, noise) across the candidate's and the baseline's runs, when the rule
    # asks (``noise.min_snr``) and both runs have the checkpoints to measure it
    snr: tuple[float, float, float] | None = None

    def decide(self, adjusted: dict[int, float]) -> Check:
        """The check: threshold and significance (``decide_gain`` or ``decide_drop``),
        then the detectable effect (``decide_power``), with ``adjusted`` the run's
        Holm-adjusted p-values by ``id`` of the comparison."""
        rule, test, c, b = self.rule, self.test, self.candidate, self.baseline
        holm_p = adjusted.get(id(self))
        p = holm_p if holm_p is not None else (test.p if test is not None else None)
        inputs = {"candidate": c.value, "candidate_stderr": c.stderr, "baseline": b.value,
                  "baseline_stderr": b.stderr, "difference": c.value - b.value}
        settings = {"threshold": str(rule.threshold), "threshold_abs": self.amount}
        if test is not None:
            inputs.update({"test": test.test, "p": test.p, **test.details})
            if test.unpaired_because:
                inputs["unpaired_because"] = test.unpaired_because
            if holm_p is not None:
                inputs["p_holm"] = holm_p
        if self.basis:
            inputs["identity"] = self.basis
        passed, why = (decide_gain if self.gain else decide_drop)(self, p, holm_p is not None, settings)
        passed, why = decide_noise(self, passed, why, settings, inputs, self.allowed_noise)
        passed, why = decide_power(self, passed, why, settings)
        if self.basis:
            why += f"; {self.basis}"
        if self.contamination:
            inputs["contamination"] = self.contamination
            why += f"; {self.contamination}"
        head = f"{self.task} {rule.metric} {_fmt(b.value)} -> {_fmt(c.value)} ({c.value - b.value:+.4f}" \
            + (", lower is better)" if rule.direction == "lower" else ")")
        return Check(rule.name, rule.kind, self.task, rule.metric, passed, f"{head}: {why}", inputs, settings)


def _test_words(m: Comparison, p: float | None, holm: bool) -> tuple[str, str, str]:
    """How the test reads in a reason: its description, the name of the p that decided,
    and why there is no test when there is none."""
    shown = describe(m.test, p if holm else None) if m.test is not None and p is not None else ""
    no_test = m.test.why_none if m.test is not None and m.test.why_none else "a stderr is missing or not finite"
    return shown, "Holm-adjusted p" if holm else "p", no_test


def decide_gain(m: Comparison, p: float | None, holm: bool, settings: dict) -> tuple[bool, str]:
    """``min_gain``: the gain must reach the threshold and, with ``significant: true``,
    be significant; without a test a required significance fails."""
    rule, diff, amount, alpha = m.rule, m.change, m.amount, m.alpha
    shown, p_name, no_test = _test_words(m, p, holm)
    settings["significant"] = rule.significant
    if rule.significant:
        settings["alpha"] = alpha
    if diff < amount:
        return False, f"gain {diff:+.4f} is below the required {amount:+.4f}"
    if rule.significant and p is None:
        return False, f"a significant gain is required but {no_test}"
    if rule.significant and p >= alpha:
        return False, f"gain not significant ({p_name}={p:.3g} >= alpha {alpha:g}; {shown})"
    return True, f"gain {diff:+.4f} >= {amount:+.4f}" + (f", significant ({shown})" if rule.significant else "")


def decide_drop(m: Comparison, p: float | None, holm: bool, settings: dict) -> tuple[bool, str]:
    """``max_drop``: a drop within the threshold passes; with ``alpha``, a larger drop
    fails only when it is significant, and the threshold alone decides (stricter, and
    said) when no test can be made."""
    use_alpha = m.rule.alpha is not None
    drop, amount, alpha = -m.change, m.amount, m.alpha
    shown, p_name, no_test = _test_words(m, p, holm)
    settings["alpha"] = alpha if use_alpha else None
    if drop <= amount:
        return True, f"drop {drop:+.4f} within the allowed {amount:.4f}" + (f" ({shown})" if use_alpha and shown else "")
    if use_alpha and p is not None and p >= alpha:
        return True, f"drop {drop:+.4f} exceeds {amount:.4f} but is not significant ({p_name}={p:.3g} >= {alpha:g}; {shown})"
    why = f"drop {drop:+.4f} exceeds the allowed {amount:.4f}"
    if use_alpha:
        why += f" and is significant ({p_name}={p:.3g} < {alpha:g}; {shown})" if p is not None else \
            f" ({no_test}: threshold applied without a significance test)"
    return False, why


def decide_noise(m: Comparison, passed: bool, why: str, settings: dict, inputs: dict,
                 allowed: bool) -> tuple[bool, str]:
    """``noise: {last: N, k: K}``: a gain must exceed K times the candidate run's
    checkpoint noise to pass, and a drop within it is not a drop. Without N trained
    checkpoints to measure it on, the check fails closed (``noise``) unless allowed."""
    if m.rule.noise is None:
        return passed, why
    last, k = m.rule.noise
    settings["noise"] = {"last": last, "k": k}
    if m.noise is None:
        if allowed:
            return passed, f"{why}; checkpoint noise not checked (allowed: fewer than {last} trained checkpoints)"
        return False, (f"{why}; the checkpoint noise is unknown: the candidate's ledger does not hold {last} trained "
                       "checkpoints up to it [fail-closed: noise]")
    inputs["checkpoint_noise"] = m.noise
    bound = k * m.noise
    figure = f"{k:g} x the checkpoint noise (std {m.noise:.4f} over the last {last} checkpoints) = {bound:.4f}"
    change = m.change
    if m.gain and passed and change <= bound:
        return False, f"{why}; but the gain is within {figure} [fail-closed: noise]"
    if not m.gain and not passed and -change <= bound:
        return True, f"{why}; but the drop is within {figure}: training moves this much"
    passed, why = passed, (f"{why}; beyond {figure}" if passed and m.gain else why)
    return decide_snr(m, passed, why, settings, inputs, allowed)


def decide_snr(m: Comparison, passed: bool, why: str, settings: dict, inputs: dict,
               allowed: bool) -> tuple[bool, str]:
    """``noise.min_snr``: a task whose signal-to-noise ratio across the candidate's and
    the baseline's runs (Heineman et al.: the runs' mean final scores apart, over the
    pooled relative noise of their last N checkpoints) is below the minimum cannot tell
    the runs apart: its check fails closed (``noise``), or with ``below: skip`` does not
    decide (passes, saying so). Unknown (a baseline without a run of N trained
    checkpoints, such as the candidate run's own init) fails closed unless allowed."""
    if m.rule.min_snr is None:
        return passed, why
    minimum, below = m.rule.min_snr
    last = m.rule.noise[0]
    settings["min_snr"] = {"min": minimum, "below": below}
    if m.snr is None:
        if allowed:
            return passed, f"{why}; SNR not checked (allowed: the two runs do not each hold {last} trained checkpoints)"
        return False, (f"{why}; the signal-to-noise ratio is unknown: it needs the candidate's and the baseline's runs "
                       f"to each hold {last} trained checkpoints up to them [fail-closed: noise]")
    snr, signal_value, noise_value = m.snr
    inputs["snr"], inputs["signal"], inputs["relative_noise"] = snr, signal_value, noise_value
    figure = (f"SNR {snr:.2f} (signal {signal_value:.4f} over relative noise {noise_value:.4f}, last {last} "
              f"checkpoints of both runs)")
    if snr >= minimum:
        return passed, f"{why}; {figure} >= min_snr {minimum:g}"
    if below == "skip":
        return True, f"not decided: {figure} is below min_snr {minimum:g}, so this task cannot tell the runs apart ({why})"
    return False, f"{why}; {figure} is below min_snr {minimum:g} [fail-closed: noise]"


def decide_power(m: Comparison, passed: bool, why: str, settings: dict) -> tuple[bool, str]:
    """``max_detectable_effect``: a passing check fails closed when its documents could
    not have detected a difference that small (or no paired test says how small)."""
    limit, test = m.rule.max_detectable_effect, m.test
    if not passed or limit is None:
        return passed, why
    settings["max_detectable_effect"] = limit
    if test is None or test.mde is None:
        because = test.unpaired_because if test is not None and test.unpaired_because else "no per-document scores"
        return False, (f"{why}; the detectable effect cannot be computed without a paired test ({because})"
                       " [fail-closed: underpowered]")
    if test.mde > limit:
        return False, (f"{why}; underpowered: on these documents a difference smaller than {test.mde:.4f} could not "
                       f"have been detected, above the required {limit:g} [fail-closed: underpowered]")
    return passed, why


def _compare(rule: Rule, gate: GateRun, gain: bool) -> list[Check | Comparison]:
    """Measure each task of a comparing rule; fail-closed checks come back decided."""
    candidate, baseline = gate.candidate, gate.baseline
    if baseline is None:
        return [Check(rule.name, rule.kind, ", ".join(rule.tasks), rule.metric, False,
                      "this rule compares with a baseline, and none was given [fail-closed: missing]")]
    out: list[Check | Comparison] = []
    for task in _tasks(rule, candidate, baseline):
        failed = provenance(rule, task, candidate, baseline, gate.policy)
        c, b = _measures(rule, task, candidate, baseline)
        if failed or c is None or b is None or not (c.finite and b.finite):
            out.append(failed or _allowed_check(rule, task, c, b))
            continue
        uses_test = (gain and rule.significant) or (not gain and rule.alpha is not None) \
            or rule.max_detectable_effect is not None
        test = significance(gate, rule, task, c, b) if uses_test else None
        noise = None
        if rule.noise is not None:
            history = gate.history(task, rule.metric)
            if history is not None and len(history) >= rule.noise[0]:
                noise = float(np.std(history[-rule.noise[0]:]))
        out.append(Comparison(rule, task, gain, c, b, rule.threshold.of(b.value), gate.alpha(rule), test,
                              identity_basis(task, candidate, baseline),
                              contamination_note(task, candidate, gate.policy), noise,
                              gate.allowed(rule, "noise"), _snr(rule, gate, task)))
    return out


def _snr(rule: Rule, gate: GateRun, task: str) -> tuple[float, float, float] | None:
    """(snr, signal, noise) of ``task`` across the candidate's and the baseline's runs
    over their last N trained checkpoints, or None when a run lacks them or both sides
    are one run."""
    if rule.min_snr is None or rule.noise is None:
        return None
    last = rule.noise[0]
    ledgers = [e.ledger for e in (gate.candidate, gate.baseline) if e is not None]
    if len(ledgers) < 2 or None in ledgers or Path(ledgers[0]).resolve() == Path(ledgers[1]).resolve():
        return None
    histories = [gate.history(task, rule.metric, side) for side in ("candidate", "baseline")]
    if any(h is None or len(h) < last for h in histories):
        return None
    finals = [h[-last:] for h in histories]
    signal_value = signal([float(np.mean(f)) for f in finals])
    noise_value = relative_std([v for f in finals for v in f])
    snr = signal_to_noise(signal_value, noise_value)
    return None if snr is None else (snr, signal_value, noise_value)


def rule_max_drop(rule: Rule, gate: GateRun) -> list[Check | Comparison]:
    """Allowed drop against the baseline (absolute or relative), optionally significance-tested."""
    return _compare(rule, gate, gain=False)


def rule_min_gain(rule: Rule, gate: GateRun) -> list[Check | Comparison]:
    """Required gain over the baseline, optionally required to be significant."""
    return _compare(rule, gate, gain=True)


@dataclass
class JointOutcome:
    """A joint rule's parts, measured; decided together once their tests are adjusted."""

    rule: Rule
    parts: list

    def tests(self) -> list[Comparison]:
        """Every part's tests that decide."""
        return [t for part in self.parts for t in tests_of(part)]

    def decide(self, adjusted: dict[int, float]) -> Check:
        """One check: passed only when every part passed, listing their reasons."""
        parts = [decided(part, adjusted) for part in self.parts]
        passed = bool(parts) and all(p.passed for p in parts)
        failing = [p for p in parts if not p.passed]
        reason = ("all parts pass: " if passed else "failing: ") + "; ".join(
            p.reason for p in (parts if passed else failing))
        return Check(self.rule.name, self.rule.kind, " & ".join(sorted({p.task for p in parts})),
                     "+".join(sorted({p.metric for p in parts})), passed, reason,
                     {"parts": [p.__dict__ for p in parts]}, {})


def rule_joint(rule: Rule, gate: GateRun) -> list[JointOutcome]:
    """All parts must pass together, e.g. "domain gains at least X while general drops at
    most Y" (EcomGPT-CT's forgetting check). One check, listing every part's outcome."""
    parts = []
    for part in rule.parts:
        part = part if not rule.allow else _with_allow(part, rule.allow)
        parts.extend(rule_function(part.kind)(part, gate))
    return [JointOutcome(rule, parts)]


def tests_of(outcome) -> list[Comparison]:
    """The tests an outcome's decision rests on (none for a ``Check``, decided already)."""
    return [] if isinstance(outcome, Check) else outcome.tests()


def decided(outcome, adjusted: dict[int, float]) -> Check:
    """An outcome as a ``Check``: a check as it is, a measurement decided now."""
    return outcome if isinstance(outcome, Check) else outcome.decide(adjusted)


def _with_allow(part: Rule, allow: tuple[str, ...]) -> Rule:
    return dataclasses.replace(part, allow=tuple(set(part.allow) | set(allow)))


def rule_function(kind: str):
    """The function of a rule kind, built-in or a plugin's (``ecomharness_gate_rules``)."""
    return gate_rules.get(kind)
