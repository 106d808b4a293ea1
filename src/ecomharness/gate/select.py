"""Gate a ledger's checkpoints: one chosen by selector, or the best one that passes."""

from __future__ import annotations

from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.gate.evidence import Evidence, from_record, ledger_records
from ecomharness.gate.policy import Policy
from ecomharness.gate.verdict import Verdict, run_gate


def best_passing(policy: Policy, ledger: Path, baseline: Evidence | None) -> tuple[dict | None, Verdict | None, list]:
    """Gate every checkpoint after ``init``; return the best passing record and verdict
    (by the policy's ``rank_by``), and all ``(checkpoint, passed)`` outcomes."""
    if policy.rank_by is None:
        raise UserError("--checkpoint best-passing needs `rank_by: {task, metric}` in the policy")
    task, metric = policy.rank_by
    outcomes, best = [], None
    for record in ledger_records(ledger):
        if record.get("checkpoint") == "init":
            continue
        verdict = run_gate(policy, from_record(record, f"{ledger}@{record['checkpoint']}"), baseline)
        outcomes.append((record["checkpoint"], verdict.passed))
        value = record.get("metrics", {}).get(task, {}).get(metric, {}).get("value")
        if verdict.passed and value is not None and (best is None or value > best[0]):
            best = (value, record, verdict)
    return (best[1], best[2], outcomes) if best else (None, None, outcomes)
