"""Run the embedded end-to-end demo on this machine, with nothing downloaded.

Synthetic shop corpus (and the shop's evaluation documents, from products kept out of
it) -> tokenizer -> base model pre-trained on general text -> cleaned data builds
(filters, dedup, decontamination) -> CPT with EcomGPT-CT graph mixing (general:domain
2:1) under DeepSpeed, every checkpoint evaluated in the loop (held-out bits per byte,
ranked choice) and the final one on ecom_icl and general_icl, each gated against the
base -> report. Each stage prints its time; corpus, tokenizer, data, base model and its
evaluation are cached under OUT/cache.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "demo"
HELP = "run the end-to-end CPT demo (synthetic data, tiny Bloom, DeepSpeed, gate)"
EPILOG = """\
examples:
  ecomharness demo                       # writes runs/demo/
  ecomharness demo --compare             # also Separate, domain-only, general-only CPT
  ecomharness demo --plan                # plan the mixture: a grid of shares, the D-CPT law, a share
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness demo``."""
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--compare", action="store_true",
                        help="also run Separate mixing, domain-only and general-only CPT and compare")
    parser.add_argument("--plan", action="store_true",
                        help="instead of the CPT demo: plan the mixture on the shop (a grid of domain shares, the "
                             "D-CPT law fitted, the recommended share trained and checked; docs/planning.md)")


def run(args) -> int:
    """Run the demo; exit code 0 when every stage finished."""
    from pathlib import Path

    if args.plan:
        from ecomharness.demo.plan import run_plan_demo

        run_plan_demo(Path(args.out))
        return EXIT_OK
    from ecomharness.demo.run import run_demo

    run_demo(Path(args.out), compare=args.compare)
    return EXIT_OK  # the summary says plainly whether the gate passed and the gain showed
