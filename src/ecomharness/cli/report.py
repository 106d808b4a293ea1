"""Write a run's evaluation report: metric-vs-step curves (PNG) and a markdown table."""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "report"
HELP = "curves and a table of every evaluated checkpoint of a run"
EPILOG = """\
examples:
  ecomharness report runs/my_cpt                 # runs/my_cpt/report/{curves.png,report.md}
  ecomharness report runs/my_cpt --metric acc --out /tmp/report
  ecomharness report --compare runs/cpt runs/cpt_lssd runs/cpt_mix runs/cpt_lssd_mix
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness report``."""
    parser.add_argument("run_dir", nargs="+", help="the training run directory (several with --compare)")
    parser.add_argument("--compare", action="store_true",
                        help="lay runs side by side: domain and general group scores, gate vs each run's init")
    parser.add_argument("--domain", default="ecom_icl", help="domain group for --compare (default ecom_icl)")
    parser.add_argument("--general", default="general_icl", help="general group for --compare (default general_icl)")
    parser.add_argument("--policy", default=None, help="gate policy for --compare (default train/gates/default.yaml)")
    parser.add_argument("--metric", default=None,
                        help="metric to plot (default: each task's headline: score, else acc, else bits_per_byte)")
    parser.add_argument("--noise-last", type=int, default=5,
                        help="checkpoint noise over the last N trained checkpoints (default 5, at least 3)")
    parser.add_argument("--out", default=None, help="output directory (default: RUN_DIR/report)")


def run(args) -> int:
    """Write the report and print where."""
    from ecomharness.errors import UserError
    from ecomharness.report.curves import compare_runs, write_report

    if args.compare:
        table = compare_runs(args.run_dir, args.domain, args.general, args.policy, args.noise_last)
        print(table)
        if args.out:
            from pathlib import Path

            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "compare.md").write_text(table, encoding="utf-8")
        return EXIT_OK
    if len(args.run_dir) != 1:
        raise UserError("give one run directory (or several with --compare)")
    paths = write_report(args.run_dir[0], args.out, args.metric, args.noise_last)
    print(f"[report] {paths['report']}\n[report] {paths['curves']}")
    return EXIT_OK
