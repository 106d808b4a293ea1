"""Decide whether a checkpoint may ship: a policy of small checks over evaluation results.

Exit code 0 when every check passes, 1 when any fails (only then), 2 on a usage or input
error (including an output path that cannot be written), 3 on an internal error.
Writes a markdown summary (also appended to $GITHUB_STEP_SUMMARY when set), JUnit XML
and a JSON verdict on request.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_FAILED, EXIT_OK

NAME = "gate"
HELP = "pass/fail a checkpoint against a baseline with a policy (exit 0/1/2)"
EPILOG = """\
examples:
  ecomharness gate --policy train/gates/default.yaml --candidate results/cpt --baseline results/base
  ecomharness gate --policy P --ledger runs/cpt --checkpoint last          # baseline: the run's init
  ecomharness gate --policy P --ledger runs/cpt --checkpoint best-passing --junit gate.xml
  ecomharness gate --policy P --ledger runs/cpt --plan      # documents each check would need
inputs: an lm-eval results JSON (or a directory of them), or a run directory / ledger with
--checkpoint last | best | best-passing | average | init | STEP
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness gate``."""
    parser.add_argument("--policy", required=True, help="gate policy YAML (e.g. train/gates/default.yaml)")
    parser.add_argument("--candidate", help="results JSON / directory, or a run directory / ledger")
    parser.add_argument("--ledger", help="same as --candidate with a run directory or ledger")
    parser.add_argument("--checkpoint", default=None,
                        help="with a ledger: last (default), best, best-passing, average, init, STEP")
    parser.add_argument("--baseline", help="results JSON / directory, or a run directory / ledger (default: the "
                                           "candidate ledger's init record, when there is one)")
    parser.add_argument("--baseline-checkpoint", default="init", help="with a baseline ledger (default: init)")
    parser.add_argument("--json", dest="json_out", help="write the JSON verdict here")
    parser.add_argument("--junit", help="write JUnit XML here")
    parser.add_argument("--markdown", help="write the markdown summary here")
    parser.add_argument("--quiet", action="store_true", help="print only the one-line verdict")
    parser.add_argument("--plan", action="store_true",
                        help="do not gate: print how many documents each comparing rule would need to detect its "
                             "threshold (or max_detectable_effect), from the variance observed between the two sides")


def run(args) -> int:
    """Gate and write the outputs; the exit code is the verdict (0 passed, 1 failed)."""
    from pathlib import Path

    from ecomharness.errors import UserError
    from ecomharness.gate.evidence import NoCandidate, is_ledger, load_evidence
    from ecomharness.gate.policy import load_policy
    from ecomharness.gate.checkpoints import best_passing
    from ecomharness.gate.verdict import closed_verdict, run_gate
    from ecomharness.registry import gate_rules

    source = args.ledger or args.candidate
    if not source or (args.ledger and args.candidate):
        raise UserError("give exactly one of --candidate or --ledger")
    policy = load_policy(args.policy, known_kinds=set(gate_rules.names()))
    source_path = Path(source)
    as_ledger = bool(args.ledger) or is_ledger(source_path)
    if args.checkpoint and not as_ledger:
        raise UserError(f"{source}: --checkpoint needs a run directory or ledger, not a results file")
    baseline = None
    if args.baseline:
        base_path = Path(args.baseline)
        try:
            baseline = load_evidence(base_path, args.baseline_checkpoint if is_ledger(base_path) else None,
                                     policy.rank_by)
        except NoCandidate as exc:
            raise UserError(f"--baseline {args.baseline}: {exc}") from exc
    elif as_ledger and source_path.exists():
        try:
            baseline = load_evidence(source_path, "init", ledger=True)
        except (UserError, NoCandidate):
            baseline = None  # rules that need one fail closed, saying so
    if args.plan:
        return _plan(policy, source_path, baseline, args, as_ledger)
    if args.checkpoint == "best-passing":
        if not as_ledger:
            raise UserError("--checkpoint best-passing needs a ledger or run directory")
        record, verdict, outcomes = best_passing(policy, source_path, baseline)
        print("[gate] " + (", ".join(f"{name} {outcome}" for name, outcome in outcomes) or "no trained checkpoint"))
        if verdict is None:
            verdict = closed_verdict(policy, str(source_path), baseline.label if baseline else None, "no_candidate",
                                     "no trained checkpoint passes the policy")
        else:
            print(f"[gate] best passing checkpoint: {record['checkpoint']} (step {record['step']})")
    else:
        try:
            candidate = load_evidence(source_path, args.checkpoint, policy.rank_by, ledger=as_ledger)
            verdict = run_gate(policy, candidate, baseline)
        except NoCandidate as exc:
            verdict = closed_verdict(policy, str(source_path), baseline.label if baseline else None, exc.reason,
                                     str(exc))
    write_outputs(verdict, args)
    failed = sum(not c.passed for c in verdict.checks)
    print(f"[gate] {'PASSED' if verdict.passed else 'FAILED'}: {len(verdict.checks) - failed} of "
          f"{len(verdict.checks)} checks passed")
    return EXIT_OK if verdict.passed else EXIT_FAILED


def _plan(policy, source_path, baseline, args, as_ledger: bool) -> int:
    from ecomharness.errors import UserError
    from ecomharness.gate.compare import plan, plan_markdown
    from ecomharness.gate.evidence import NoCandidate, load_evidence
    from ecomharness.util import write_json_atomic

    if baseline is None:
        raise UserError("--plan needs a baseline: --baseline, or a ledger with an init record")
    try:
        candidate = load_evidence(source_path, args.checkpoint if args.checkpoint != "best-passing" else None,
                                  policy.rank_by, ledger=as_ledger)
    except NoCandidate as exc:
        raise UserError(f"{source_path}: {exc}") from exc
    rows = plan(policy, candidate, baseline)
    print(plan_markdown(rows))
    if args.json_out:
        write_json_atomic(args.json_out, {"candidate": candidate.label, "baseline": baseline.label, "rows": rows})
    return EXIT_OK


def write_outputs(verdict, args) -> None:
    """Write every requested output (parents created) before the exit code is decided; a
    path that cannot be written is bad input (exit 2), never a verdict."""
    import os
    from pathlib import Path

    from ecomharness.errors import UserError
    from ecomharness.gate.verdict import to_junit, to_markdown
    from ecomharness.util import write_json_atomic, write_text_atomic

    markdown = to_markdown(verdict)
    writes = [(args.markdown, "--markdown", lambda p: write_text_atomic(p, markdown)),
              (args.junit, "--junit", lambda p: write_text_atomic(p, to_junit(verdict))),
              (args.json_out, "--json", lambda p: write_json_atomic(p, verdict.to_dict())),
              (os.environ.get("GITHUB_STEP_SUMMARY"), "$GITHUB_STEP_SUMMARY", lambda p: _append(p, markdown))]
    for path, flag, write in writes:
        if not path:
            continue
        try:
            write(Path(path))
        except OSError as exc:
            raise UserError(f"{flag} {path}: cannot write the gate output ({exc.strerror or exc})") from exc
    if not args.quiet:
        print(markdown)


def _append(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
