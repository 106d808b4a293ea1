"""Average the weights of a run's last checkpoints, evaluate the average, record it.

The average goes to ``RUN/average-last-N/`` and into the run's ledger as checkpoint
``average-last-N`` (train/average.py); ``ecomharness gate --ledger RUN --checkpoint
average`` gates it. Exit 0 when every evaluation succeeded, 3 when one failed (recorded
in the ledger), 2 on bad input.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_INTERNAL, EXIT_OK

NAME = "average"
HELP = "average a run's last N checkpoints, evaluate and record the average (gate --checkpoint average)"
EPILOG = """\
examples:
  ecomharness average runs/my_cpt --last 3
  ecomharness gate --policy train/gates/default.yaml --ledger runs/my_cpt --checkpoint average
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness average``."""
    parser.add_argument("run_dir", help="the training run directory")
    parser.add_argument("--last", type=int, required=True, help="how many of the last checkpoints (at least 2)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")


def run(args) -> int:
    """Write, evaluate and record the average; exit 3 when an evaluation failed."""
    import sys

    from ecomharness.train.average import average_run

    records = average_run(args.run_dir, args.last, device=args.device)
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        print(f"ecomharness average: error: {len(failed)} evaluation(s) of the average failed "
              f"({'; '.join(r.get('error', '') for r in failed)}); recorded in the ledger", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK
