"""Run the embedded end-to-end demo on this machine, with nothing downloaded.

Builds a tiny tokenizer and Bloom model locally, then evaluates it through the same
path as ``ecomharness eval`` on the bundled task samples, printing each stage's time.
"""

from __future__ import annotations

NAME = "demo"
HELP = "run the end-to-end demo (tiny local model, bundled tasks)"
EPILOG = """\
examples:
  ecomharness demo                       # writes runs/demo/
  ecomharness demo --out /tmp/demo --limit 10
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness demo``."""
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument(
        "--limit", type=int, default=None, help="documents per task (default: 10)"
    )


def run(args) -> int:
    """Run the demo; exit code 0 when every stage finished."""
    from pathlib import Path

    from ecomharness.demo.run import run_demo

    run_demo(Path(args.out), limit=args.limit)
    return 0
