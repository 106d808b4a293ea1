"""Decide whether a checkpoint may ship: a policy of small checks over evaluation results.

Exit code 0 when every check passes, 1 when any fails, 2 on a usage or input error.
Writes a markdown summary (also appended to $GITHUB_STEP_SUMMARY when set), JUnit XML
and a JSON verdict on request.
"""

from __future__ import annotations

NAME = "gate"
HELP = "pass/fail a checkpoint against a baseline with a policy (exit 0/1/2)"
EPILOG = """\
examples:
  ecomharness gate --policy train/gates/default.yaml --candidate results/cpt --baseline results/base
  ecomharness gate --policy P --ledger runs/cpt --checkpoint last          # baseline: the run's init
  ecomharness gate --policy P --ledger runs/cpt --checkpoint best-passing --junit gate.xml
inputs: an lm-eval results JSON (or a directory of them), or a run directory / ledger with
--checkpoint last | best | best-passing | init | STEP
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness gate``."""
    parser.add_argument("--policy", required=True, help="gate policy YAML (e.g. train/gates/default.yaml)")
    parser.add_argument("--candidate", help="results JSON / directory, or a run directory / ledger")
    parser.add_argument("--ledger", help="same as --candidate with a run directory or ledger")
    parser.add_argument("--checkpoint", default=None, help="with a ledger: last (default), best, best-passing, init, STEP")
    parser.add_argument("--baseline", help="results JSON / directory, or a run directory / ledger (default: the "
                                           "candidate ledger's init record, when there is one)")
    parser.add_argument("--baseline-checkpoint", default="init", help="with a baseline ledger (default: init)")
    parser.add_argument("--json", dest="json_out", help="write the JSON verdict here")
    parser.add_argument("--junit", help="write JUnit XML here")
    parser.add_argument("--markdown", help="write the markdown summary here")
    parser.add_argument("--quiet", action="store_true", help="print only the one-line verdict")


def run(args) -> int:
    """Gate and write the outputs; the exit code is the verdict."""
    import os
    from pathlib import Path

    from ecomharness.errors import UserError
    from ecomharness.gate.evidence import is_ledger, load_evidence
    from ecomharness.gate.policy import load_policy
    from ecomharness.gate.select import best_passing
    from ecomharness.gate.verdict import run_gate, to_junit, to_markdown
    from ecomharness.registry import gate_rules
    from ecomharness.util import write_json_atomic

    source = args.ledger or args.candidate
    if not source or (args.ledger and args.candidate):
        raise UserError("give exactly one of --candidate or --ledger")
    policy = load_policy(args.policy, known_kinds=set(gate_rules.names()))
    source_path = Path(source)
    baseline = None
    if args.baseline:
        baseline = load_evidence(args.baseline, args.baseline_checkpoint if is_ledger(Path(args.baseline)) else None,
                                 policy.rank_by)
    elif is_ledger(source_path):
        try:
            baseline = load_evidence(source_path, "init")
        except UserError:
            baseline = None  # rules that need one fail closed, saying so
    if args.checkpoint == "best-passing":
        if not is_ledger(source_path):
            raise UserError("--checkpoint best-passing needs a ledger or run directory")
        record, verdict, outcomes = best_passing(policy, source_path, baseline)
        print("[gate] " + ", ".join(f"{name} {'pass' if ok else 'fail'}" for name, ok in outcomes))
        if verdict is None:
            print("[gate] FAILED: no checkpoint passes the policy")
            return 1
        print(f"[gate] best passing checkpoint: {record['checkpoint']} (step {record['step']})")
    else:
        candidate = load_evidence(source_path, args.checkpoint, policy.rank_by)
        verdict = run_gate(policy, candidate, baseline)
    markdown = to_markdown(verdict)
    if args.markdown:
        Path(args.markdown).write_text(markdown, encoding="utf-8")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(markdown)
    if args.junit:
        Path(args.junit).write_text(to_junit(verdict), encoding="utf-8")
    if args.json_out:
        write_json_atomic(Path(args.json_out), verdict.to_dict())
    if not args.quiet:
        print(markdown)
    failed = sum(not c.passed for c in verdict.checks)
    print(f"[gate] {'PASSED' if verdict.passed else 'FAILED'}: {len(verdict.checks) - failed} of "
          f"{len(verdict.checks)} checks passed")
    return 0 if verdict.passed else 1
