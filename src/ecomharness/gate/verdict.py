"""Apply a policy to evidence and render the verdict: JSON, markdown, JUnit XML."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from xml.etree import ElementTree

from ecomharness.gate.evidence import Evidence
from ecomharness.gate.policy import Policy
from ecomharness.gate.rules import Check, decided, rule_function, tests_of
from ecomharness.gate.run import GateRun
from ecomharness.gate.significance import holm_adjusted


@dataclass
class Verdict:
    """Every check, the inputs and the outcome: passed only if every check passed."""

    passed: bool
    checks: list[Check]
    candidate: str
    baseline: str | None
    policy: str
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        """The JSON verdict (NaN and infinities as the strings "nan", "inf", "-inf", so
        that strict JSON readers accept it)."""
        return _json_safe({
            "passed": self.passed, "candidate": self.candidate, "baseline": self.baseline, "policy": self.policy,
            "created": self.created, "failed": sum(not c.passed for c in self.checks),
            "checks": [dataclasses.asdict(c) for c in self.checks],
        })


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def closed_verdict(policy: Policy, candidate: str, baseline: str | None, reason: str, text: str) -> Verdict:
    """A failed verdict without any rule run: there was nothing that may be gated (only
    ``init`` in the ledger, or the chosen checkpoint's evaluation failed)."""
    check = Check("inputs", "inputs", "*", "*", False, f"{text} [fail-closed: {reason}]")
    return Verdict(False, [check], candidate, baseline, policy.source)


def run_gate(policy: Policy, candidate: Evidence, baseline: Evidence | None) -> Verdict:
    """Run every rule of the policy; empty evidence fails on its own.

    One pass: every rule measures (each test made once, ``gate/significance.py``); with
    ``correction: holm`` the p-values of every check that decides on one are adjusted
    together; then every measurement is decided into its check."""
    checks: list[Check] = []
    for label, evidence in (("candidate", candidate), ("baseline", baseline)):
        if evidence is not None and not evidence.metrics:
            checks.append(Check("inputs", "inputs", "*", "*", False, f"the {label} ({evidence.label}) has no results"))
    if not checks:
        gate = GateRun(policy, candidate, baseline)
        outcomes = [outcome for rule in policy.rules for outcome in rule_function(rule.kind)(rule, gate)]
        tested = [test for outcome in outcomes for test in tests_of(outcome)]
        adjusted = {}
        if policy.correction == "holm" and len(tested) > 1:
            adjusted = holm_adjusted({id(test): test.test.p for test in tested})
        checks = [decided(outcome, adjusted) for outcome in outcomes]
    if not checks:
        checks.append(Check("inputs", "inputs", "*", "*", False, "the policy produced no checks"))
    return Verdict(all(c.passed for c in checks), checks, candidate.label, baseline.label if baseline else None,
                   policy.source)


def to_markdown(verdict: Verdict) -> str:
    """A table fit for a CI job summary."""
    status = "PASSED" if verdict.passed else "FAILED"
    lines = [f"## Checkpoint gate: {status}", "",
             f"Candidate `{verdict.candidate}`" + (f" vs baseline `{verdict.baseline}`" if verdict.baseline else "")
             + f"; policy `{verdict.policy}`.", "",
             "| | rule | task | metric | reason |", "|---|---|---|---|---|"]
    for check in sorted(verdict.checks, key=lambda c: c.passed):
        mark = "pass" if check.passed else "**FAIL**"
        reason = check.reason.replace("|", "\\|")
        lines.append(f"| {mark} | {check.rule} | {check.task} | {check.metric} | {reason} |")
    return "\n".join(lines) + "\n"


def to_junit(verdict: Verdict) -> str:
    """JUnit XML: a testsuite with one testcase per rule and task, failures with reasons."""
    suite = ElementTree.Element("testsuite", name="ecomharness-gate", tests=str(len(verdict.checks)),
                                failures=str(sum(not c.passed for c in verdict.checks)), errors="0", skipped="0")
    props = ElementTree.SubElement(suite, "properties")
    for name, value in (("candidate", verdict.candidate), ("baseline", verdict.baseline or ""),
                        ("policy", verdict.policy)):
        ElementTree.SubElement(props, "property", name=name, value=value)
    for check in verdict.checks:
        case = ElementTree.SubElement(suite, "testcase", classname=f"gate.{check.rule}",
                                      name=f"{check.task}/{check.metric}", time="0")
        if not check.passed:
            failure = ElementTree.SubElement(case, "failure", message=check.reason, type=check.kind)
            failure.text = check.reason
        else:
            ElementTree.SubElement(case, "system-out").text = check.reason
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
