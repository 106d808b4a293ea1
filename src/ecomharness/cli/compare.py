"""Compare two evaluations by hand: the gate's paired analysis as a table, no policy.

Exit code 0 when the table was written (whatever it shows), 2 on bad input, 3 on an
internal error: a comparison is not a verdict.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "compare"
HELP = "paired comparison of two evaluations on the same documents (markdown + JSON)"
EPILOG = """\
examples:
  ecomharness compare results/cpt results/base
  ecomharness compare runs/cpt runs/cpt --checkpoint last --baseline-checkpoint init --tasks 'ecom_icl*'
  ecomharness compare A B --metrics score,acc --json compare.json --markdown compare.md
A and B: lm-eval results JSON files or folders (written by `ecomharness eval`), or run
directories / ledgers with a checkpoint selector.
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness compare``."""
    parser.add_argument("candidate", help="results JSON / directory, or a run directory / ledger")
    parser.add_argument("baseline", help="results JSON / directory, or a run directory / ledger")
    parser.add_argument("--checkpoint", default=None, help="candidate ledger: last (default), best, init, STEP")
    parser.add_argument("--baseline-checkpoint", default=None, help="baseline ledger: init (default), last, STEP")
    parser.add_argument("--tasks", default=None, help="comma-separated task or group names or globs (default: all)")
    parser.add_argument("--metrics", default="score", help="comma-separated metrics (default: score)")
    parser.add_argument("--alpha", type=float, default=0.05, help="for the intervals and detectable effects")
    parser.add_argument("--resamples", type=int, default=10_000, help="paired bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="paired bootstrap seed (default 0)")
    parser.add_argument("--json", dest="json_out", help="write the rows as JSON here")
    parser.add_argument("--markdown", help="write the markdown table here")


def run(args) -> int:
    """Load both sides, test each (task, metric) on paired evidence, print the table."""
    from pathlib import Path

    from ecomharness.errors import UserError
    from ecomharness.gate.compare import compare, compare_markdown
    from ecomharness.gate.evidence import NoCandidate, is_ledger, load_evidence
    from ecomharness.util import write_json_atomic, write_text_atomic

    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha: expected a number between 0 and 1, got {args.alpha}")
    if args.resamples < 100:
        raise UserError(f"--resamples: expected at least 100, got {args.resamples}")
    sides = []
    for value, selector, default in ((args.candidate, args.checkpoint, "last"),
                                     (args.baseline, args.baseline_checkpoint, "init")):
        path = Path(value)
        ledger = path.exists() and is_ledger(path)
        if selector and not ledger:
            raise UserError(f"{value}: a checkpoint selector needs a run directory or ledger")
        try:
            sides.append(load_evidence(path, (selector or default) if ledger else None, ledger=ledger))
        except NoCandidate as exc:
            raise UserError(f"{value}: {exc}") from exc
    candidate, baseline = sides
    tasks = [t for t in (args.tasks or "").split(",") if t] or None
    metrics = tuple(m for m in args.metrics.split(",") if m)
    rows = compare(candidate, baseline, tasks, metrics, args.alpha, args.resamples, args.seed)
    if not rows:
        raise UserError(f"no task reports {', '.join(metrics)} on both sides"
                        + (f" among {', '.join(tasks)}" if tasks else ""))
    markdown = compare_markdown(rows, candidate.label, baseline.label)
    print(markdown)
    for path, flag, write in ((args.markdown, "--markdown", lambda p: write_text_atomic(p, markdown)),
                              (args.json_out, "--json", lambda p: write_json_atomic(
                                  p, {"candidate": candidate.label, "baseline": baseline.label, "rows": rows}))):
        if path:
            try:
                write(Path(path))
            except OSError as exc:
                raise UserError(f"{flag} {path}: cannot write ({exc.strerror or exc})") from exc
    return EXIT_OK
