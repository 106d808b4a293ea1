"""Evaluate a training run's checkpoints as they appear (asynchronous evaluation).

It evaluates the recipe's ``eval.async`` profile (or ``eval.inline`` when that is the
only one, or the one ``--profile`` names), in another process or on another GPU. Safe to restart: checkpoints already in the ledger are skipped. Exit code 0 when every
evaluation succeeded, 3 when one failed (recorded in the ledger), 2 on bad input. Each
checkpoint is pinned while it is evaluated (a checkpoint rotated away first is recorded
as skipped, and does not change the exit code). ``--backend vllm`` evaluates on vLLM, in
the environment ``make vllm`` creates (docs/training.md).
"""

from __future__ import annotations

from ecomharness.errors import EXIT_INTERNAL, EXIT_OK

NAME = "watch"
HELP = "evaluate each checkpoint of a run as it appears (async evaluation)"
EPILOG = """\
examples:
  ecomharness watch runs/my_cpt                # until training is done
  ecomharness watch runs/my_cpt --once         # evaluate what is there, then exit
  ecomharness watch runs/my_cpt --profile inline --once   # catch up on the inline profile
  CUDA_VISIBLE_DEVICES=1 ecomharness watch runs/my_cpt --device cuda
  CUDA_VISIBLE_DEVICES=2,3 ecomharness watch runs/my_cpt --backend vllm   # after `make vllm`
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness watch``."""
    parser.add_argument("run_dir", help="the training run directory")
    parser.add_argument("--once", action="store_true", help="evaluate pending checkpoints once and exit")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between looks (default 10)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    parser.add_argument("--profile", choices=("inline", "async"), default=None,
                        help="which of the recipe's eval profiles (default: async if it has one, else inline)")
    parser.add_argument("--backend", choices=("hf", "vllm"), default=None,
                        help="what computes the model's outputs (default: the profile's `backend`, else hf); "
                             "vllm takes the profile's `vllm` arguments")
    parser.add_argument("--vllm-python", default=None, metavar="PATH",
                        help="the Python of vLLM's environment (default: $ECOMHARNESS_VLLM_PYTHON, else the "
                             ".venv-vllm `make vllm` creates)")


def run(args) -> int:
    """Watch the run; print one line per evaluated checkpoint. Exit 3 when an evaluation
    failed (recorded in the ledger; the tracebacks are above): never a silent 0."""
    from ecomharness.train.watch import watch_run

    result = watch_run(args.run_dir, once=args.once, poll_seconds=args.poll, timeout_seconds=args.timeout,
                       device=args.device, profile=args.profile, backend=args.backend,
                       vllm_python=args.vllm_python)
    skipped = f", skipped {len(result.skipped)} rotated away before they were pinned" if result.skipped else ""
    print(f"[watch] evaluated {result.evaluated} checkpoint(s){skipped}")
    if result.failed:
        import sys

        details = "; ".join(f"{name}: {error}" for name, error in result.errors.items())
        print(f"ecomharness watch: error: {len(result.failed)} evaluation(s) failed ({details}); "
              "the tracebacks are above, the failures are in the ledger", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK
