"""Paired comparison of two evaluations without a policy (``ecomharness compare``), and
the document counts a policy's thresholds need (``ecomharness gate --plan``)."""

from __future__ import annotations

import fnmatch
import math
from typing import Any

from ecomharness.gate.evidence import Evidence
from ecomharness.gate.paired import documents_needed
from ecomharness.gate.pairing import Unpaired, paired_result
from ecomharness.gate.policy import Policy


def _matching(names, patterns: list[str] | None) -> list[str]:
    if not patterns:
        return sorted(names)
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def compare(candidate: Evidence, baseline: Evidence, tasks: list[str] | None = None, metrics: tuple[str, ...] = ("score",),
            alpha: float = 0.05, resamples: int = 10_000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (task, metric) both sides report: values, the paired difference with
    its interval, p, the test, n and the detectable effect; ``unpaired`` says why a row
    has no test."""
    rows = []
    for task in _matching(set(candidate.metrics) & set(baseline.metrics), tasks):
        for metric in metrics:
            c, b = candidate.metrics[task].get(metric), baseline.metrics[task].get(metric)
            if c is None or b is None:
                continue
            row: dict[str, Any] = {"task": task, "metric": metric, "baseline": b.value, "candidate": c.value,
                                   "difference": c.value - b.value}
            try:
                row.update(paired_result(task, metric, candidate, baseline, alpha, resamples, seed).as_dict())
            except Unpaired as exc:
                row["unpaired"] = str(exc)
            rows.append(row)
    return rows


def _num(value, digits=4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def compare_markdown(rows: list[dict], candidate: str, baseline: str) -> str:
    """The comparison as a markdown table."""
    lines = [f"Candidate `{candidate}` vs baseline `{baseline}`: paired tests on the same documents.", "",
             "| task | metric | baseline | candidate | difference | CI | p | test | n | detectable |",
             "|---|---|--:|--:|--:|---|--:|---|--:|--:|"]
    for row in rows:
        if "test" in row:
            ci = f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
            lines.append(f"| {row['task']} | {row['metric']} | {_num(row['baseline'])} | {_num(row['candidate'])} | "
                         f"{row['difference']:+.4f} | {ci} | {row['p']:.3g} | {row['test']} | {row['n']} | "
                         f"{_num(row['mde'])} |")
        else:
            lines.append(f"| {row['task']} | {row['metric']} | {_num(row['baseline'])} | {_num(row['candidate'])} | "
                         f"{row['difference']:+.4f} | - | - | none: {row['unpaired']} | - | - |")
    lines.append("")
    lines.append("detectable: the smallest true difference these documents detect at the given alpha with 80% power.")
    return "\n".join(lines) + "\n"


def plan(policy: Policy, candidate: Evidence, baseline: Evidence) -> list[dict[str, Any]]:
    """For each comparing rule and task: the documents evaluated now, the detectable
    effect on them, the rule's threshold (or its ``max_detectable_effect``) and the
    documents needed to detect a difference that small, from the observed variance."""
    rows = []
    rules = [part for rule in policy.rules for part in (rule.parts or (rule,))]
    for rule in rules:
        if rule.kind not in ("max_drop", "min_gain") or rule.threshold is None:
            continue
        alpha = rule.alpha if rule.alpha is not None else policy.alpha
        for task in _matching(set(candidate.metrics) & set(baseline.metrics), list(rule.tasks)):
            b = baseline.metrics[task].get(rule.metric)
            if b is None:
                continue
            target = rule.max_detectable_effect or rule.threshold.of(b.value)
            row: dict[str, Any] = {"rule": rule.name, "task": task, "metric": rule.metric, "target": target,
                                   "alpha": alpha}
            try:
                result = paired_result(task, rule.metric, candidate, baseline, alpha, policy.resamples, policy.seed)
                row.update(n=result.n, mde=result.mde, test=result.test,
                           needed=documents_needed(result.mde, result.n, target))
            except Unpaired as exc:
                row["unpaired"] = str(exc)
            rows.append(row)
    return rows


def plan_markdown(rows: list[dict]) -> str:
    """The plan as a markdown table."""
    lines = ["| rule | task | metric | documents now | detectable now | target | documents needed |",
             "|---|---|---|--:|--:|--:|--:|"]
    for row in rows:
        if "unpaired" in row:
            lines.append(f"| {row['rule']} | {row['task']} | {row['metric']} | - | - | {_num(row['target'])} | "
                         f"unknown: {row['unpaired']} |")
            continue
        needed = "a zero threshold is never detectable: set max_detectable_effect" if row["needed"] is None \
            else f"{row['needed']:,}"
        lines.append(f"| {row['rule']} | {row['task']} | {row['metric']} | {row['n']:,} | {_num(row['mde'])} | "
                     f"{_num(row['target'])} | {needed} |")
    lines.append("")
    lines.append("documents needed: for a detectable effect as small as the target at the rule's alpha and 80% power, "
                 "scaled from the variance observed now (it shrinks as 1/sqrt(documents)).")
    return "\n".join(lines) + "\n"
