"""Write a run's evaluation report: metric-vs-step curves (PNG) and a markdown table."""

from __future__ import annotations

NAME = "report"
HELP = "curves and a table of every evaluated checkpoint of a run"
EPILOG = """\
examples:
  ecomharness report runs/my_cpt                 # runs/my_cpt/report/{curves.png,report.md}
  ecomharness report runs/my_cpt --metric acc --out /tmp/report
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness report``."""
    parser.add_argument("run_dir", help="the training run directory")
    parser.add_argument("--metric", default="score", help="metric to plot (default: score, each task's primary)")
    parser.add_argument("--out", default=None, help="output directory (default: RUN_DIR/report)")


def run(args) -> int:
    """Write the report and print where."""
    from ecomharness.report.curves import write_report

    paths = write_report(args.run_dir, args.out, args.metric)
    print(f"[report] {paths['report']}\n[report] {paths['curves']}")
    return 0
