"""Gate a ledger's checkpoints: one chosen by selector, or the best one that passes."""

from __future__ import annotations

from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.gate.evidence import INIT, Evidence, from_record, ledger_records, rank_value
from ecomharness.gate.policy import Policy
from ecomharness.gate.verdict import Verdict, run_gate


def best_passing(policy: Policy, ledger: Path, baseline: Evidence | None) -> tuple[dict | None, Verdict | None, list]:
    """Gate every trained checkpoint whose latest evaluation succeeded; return the best
    passing record and verdict (highest finite ``rank_by`` value, ties to the later
    checkpoint), and all ``(checkpoint, outcome)`` pairs, outcome ``pass``, ``fail`` or
    ``evaluation failed``."""
    if policy.rank_by is None:
        raise UserError("--checkpoint best-passing needs `rank_by: {task, metric}` in the policy")
    outcomes, best = [], None
    for record in ledger_records(ledger):
        if record["checkpoint"] == INIT:
            continue
        if record["status"] != "ok":
            outcomes.append((record["checkpoint"], "evaluation failed"))
            continue
        verdict = run_gate(policy, from_record(record, f"{ledger}@{record['checkpoint']}"), baseline)
        outcomes.append((record["checkpoint"], "pass" if verdict.passed else "fail"))
        value = rank_value(record, policy.rank_by)
        if verdict.passed and value is not None and (best is None or (value, record["step"]) >= best[0]):
            best = ((value, record["step"]), record, verdict)
    return (best[1], best[2], outcomes) if best else (None, None, outcomes)


def judge_record(policy_path: str, record: dict, ledger: Path) -> dict:
    """Gate one ledger record against the run's ``init`` record: the short verdict that
    training stores in the record (``gate``)."""
    from ecomharness.evaluation.ledger import read_ledger
    from ecomharness.gate.policy import load_policy
    from ecomharness.registry import gate_rules

    policy = load_policy(policy_path, known_kinds=set(gate_rules.names()))
    init = [r for r in read_ledger(ledger) if r["checkpoint"] == INIT and r["status"] == "ok"]
    baseline = from_record(init[-1], INIT) if init else None
    verdict = run_gate(policy, from_record(record, record["checkpoint"]), baseline)
    return {"policy": policy_path, "passed": verdict.passed,
            "failed": [f"{c.rule}: {c.reason}" for c in verdict.checks if not c.passed]}
