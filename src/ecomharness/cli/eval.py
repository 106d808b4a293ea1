"""Evaluate a model with lm-eval, with every plugin's tasks included.

Takes exactly the flags of ``lm_eval run`` (see ``ecomharness eval --help``), so any
lm-eval command line works after replacing ``lm_eval`` with ``ecomharness eval``.
What it adds: every installed plugin's task directories (plus your ``--include_path``),
plugin metric modules imported first, broken task YAML reported by file, lm-eval's
built-in task index skipped when all requested tasks are ours, and ``--device`` falling
back to ``cpu`` when no CUDA device exists.
"""

from __future__ import annotations

import argparse
import os
import sys

NAME = "eval"
HELP = "evaluate a model (all `lm_eval run` flags) with every plugin's tasks"
PASSTHROUGH = True

EPILOG = """\
examples:
  ecomharness eval --model hf --model_args pretrained=MODEL_DIR,device=cpu \\
      --tasks ecom_icl --limit 10 --output_path results/
  ecomharness eval --model hf --model_args pretrained=MODEL_DIR \\
      --tasks ecom_icl,my_task --include_path ./my_tasks
"""


def lm_eval_parser() -> argparse.ArgumentParser:
    """lm-eval's own ``run`` parser, renamed for this command.

    lm-eval exposes its flag set only through its CLI classes; reusing the parser
    (rather than copying ~40 flags) keeps ``ecomharness eval`` in step with whatever
    lm-eval version is installed. tests/test_eval_cli.py checks that every flag of
    ``lm_eval run --help`` is accepted.
    """
    from lm_eval._cli.run import Run

    holder = argparse.ArgumentParser(prog="ecomharness")
    sub = holder.add_subparsers(dest="command")
    Run.create(sub)
    parser = sub.choices["run"]
    parser.prog = "ecomharness eval"
    parser.usage = None
    parser.epilog = EPILOG
    parser.description = __doc__
    return parser


def run_argv(argv: list[str]) -> int:
    """Parse lm-eval flags, evaluate, save and print results like ``lm_eval run``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = lm_eval_parser()
    try:
        args = parser.parse_args(argv)
    except ValueError as exc:  # lm-eval's flag actions raise it for bad values (--metadata '{bad')
        from ecomharness.errors import UserError

        raise UserError(f"bad flag value: {exc}") from exc
    explicit_device = any(a == "--device" or a.startswith("--device=") for a in argv)

    from lm_eval.utils import setup_logging

    setup_logging(getattr(args, "verbosity", None) or "INFO")
    from ecomharness.evaluation.runner import evaluate_from_cli

    return evaluate_from_cli(args, explicit_device=explicit_device)


def run(args) -> int:  # pragma: no cover - PASSTHROUGH commands use run_argv
    """Not used: ``eval`` receives its raw arguments through ``run_argv``."""
    return run_argv(sys.argv[2:])
