"""Evaluate a training run's checkpoints as they appear (asynchronous evaluation).

Use with ``eval.mode: async`` in the training recipe, in another process or on another
GPU. Safe to restart: checkpoints already in the ledger are skipped.
"""

from __future__ import annotations

NAME = "watch"
HELP = "evaluate each checkpoint of a run as it appears (async evaluation)"
EPILOG = """\
examples:
  ecomharness watch runs/my_cpt                # until training is done
  ecomharness watch runs/my_cpt --once         # evaluate what is there, then exit
  CUDA_VISIBLE_DEVICES=1 ecomharness watch runs/my_cpt --device cuda
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness watch``."""
    parser.add_argument("run_dir", help="the training run directory")
    parser.add_argument("--once", action="store_true", help="evaluate pending checkpoints once and exit")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between looks (default 10)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")


def run(args) -> int:
    """Watch the run; print one line per evaluated checkpoint."""
    from ecomharness.evaluation.watch import watch_run

    count = watch_run(args.run_dir, once=args.once, poll_seconds=args.poll, timeout_seconds=args.timeout,
                      device=args.device)
    print(f"[watch] evaluated {count} checkpoint(s)")
    return 0
