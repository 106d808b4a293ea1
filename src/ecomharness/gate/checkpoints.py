"""Gate a ledger's checkpoints: one chosen by selector, or the best one that passes."""

from __future__ import annotations

from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.evaluation.checkpoint_names import INIT, is_trained
from ecomharness.evaluation.ledger import checkpoint_records, latest_ok_records, read_ledger
from ecomharness.gate.evidence import Evidence, evidence_of, from_record, ledger_records, rank_value
from ecomharness.gate.policy import Policy, load_policy
from ecomharness.registry import gate_rules
from ecomharness.gate.verdict import Verdict, run_gate


def best_passing(policy: Policy, ledger: Path, baseline: Evidence | None) -> tuple[dict | None, Verdict | None, list]:
    """Gate every trained checkpoint whose latest evaluation succeeded; return the best
    passing record and verdict (highest finite ``rank_by`` value, ties to the later
    checkpoint), and all ``(checkpoint, outcome)`` pairs, outcome ``pass``, ``fail`` or
    ``evaluation failed``."""
    if policy.rank_by is None:
        raise UserError("--checkpoint best-passing needs `rank_by: {task, metric}` in the policy")
    outcomes, best = [], None
    for record in ledger_records(ledger, policy.rank_by):
        if not is_trained(record["checkpoint"]):  # the init, and weight averages (gated by name)
            continue
        if record["status"] != "ok":
            outcomes.append((record["checkpoint"], "evaluation failed"))
            continue
        # One checkpoint's whole record at a time: a long run's ledger is not held whole.
        verdict = run_gate(policy, evidence_of(ledger, record), baseline)
        outcomes.append((record["checkpoint"], "pass" if verdict.passed else "fail"))
        value = rank_value(record, policy.rank_by)
        if verdict.passed and value is not None and (best is None or (value, record["step"]) >= best[0]):
            best = ((value, record["step"]), record, verdict)
    return (best[1], best[2], outcomes) if best else (None, None, outcomes)


def against_init(policy: Policy, record: dict, init: dict | None, label: str | None = None,
                 folder: Path | None = None) -> Verdict:
    """Gate one ledger record against its run's ``init`` record (None: the rules that
    need a baseline fail closed, saying so). The one place a ledger record is gated
    against the starting model: training, ``report --compare`` and the demo use it.
    ``folder`` is the ledger's, where both records' per-document scores are."""
    baseline = from_record(init, INIT, folder) if init is not None else None
    return run_gate(policy, from_record(record, label or record["checkpoint"], folder), baseline)


def init_record(records: list[dict]) -> dict | None:
    """The ``init`` evaluation among ledger records (its latest successful record of each
    task set, read as one), or None."""
    found = [r for r in latest_ok_records(records) if r["checkpoint"] == INIT]
    return found[-1] if found else None


def ledger_judge(policy_path: str, ledger: Path, profiles: int = 1):
    """A function ``record -> short verdict`` for the records training and ``watch``
    write: the policy is read once, here; the run's ``init`` record is looked up at each
    call (it is written before the first checkpoint, or by a resumed run).

    The record is judged together with the checkpoint's records of other task sets
    already in the ledger (the inline and the async profile). When the recipe has more
    than one profile (``profiles``), a rule whose task this checkpoint has not been
    evaluated on yet is ``pending``, not failed: the other profile may still evaluate
    it, and ``passed`` is None (undecided) unless a check already failed. With one
    profile a missing task fails, as it does in ``ecomharness gate``, the decision."""
    policy = load_policy(policy_path, known_kinds=set(gate_rules.names()))

    def judge(record: dict) -> dict:
        records = read_ledger(ledger)
        same = [r for r in records if r["checkpoint"] == record["checkpoint"] and r.get("status") == "ok"]
        candidate = checkpoint_records(same + [record])[0]
        init = init_record(records)
        verdict = against_init(policy, candidate, init, folder=Path(ledger).parent)
        measured = set(candidate.get("metrics", {}))
        if init is not None:
            measured &= set(init.get("metrics", {}))
        pending = [c for c in verdict.checks if not c.passed and c.task != "*" and c.task not in measured
                   and profiles > 1]
        failed = [c for c in verdict.checks if not c.passed and c not in pending]
        return {"policy": policy_path, "passed": False if failed else (None if pending else True),
                "failed": [f"{c.rule}: {c.reason}" for c in failed],
                **({"pending": [f"{c.rule}: {c.task}" for c in pending]} if pending else {})}

    return judge
