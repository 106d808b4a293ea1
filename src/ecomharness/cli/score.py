"""Re-score saved predictions with ecomharness's Chinese-aware metrics.

Takes lm-eval ``samples_*.jsonl`` files (from ``--log_samples``) or JSON Lines of
``{"doc": {...}, "prediction": "..."}``; use it to fix runs scored with CJK-blind ROUGE
or to score the outputs of a model behind an API.
"""

from __future__ import annotations

NAME = "score"
HELP = "re-score predictions (lm-eval samples or {doc, prediction} JSON Lines)"
EPILOG = """\
examples:
  ecomharness score results/model/samples_ecom_icl_tig_2026-01-01.jsonl
  ecomharness score preds.jsonl --kind classification --output scores.json
document fields each kind reads (see ecomharness.metrics.lmeval):
  generation: target | classification: target, label_set | extraction: gold_spans,
  extraction_format | reading: answers | headlines: target, label_set, label_type |
  ner: tokens, bio_labels
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness score``."""
    from ecomharness.metrics.rescore import KINDS

    parser.add_argument("files", nargs="+", help="samples_*.jsonl or {doc, prediction} JSON Lines")
    parser.add_argument("--kind", choices=KINDS, help="how to score (default: from the document fields)")
    parser.add_argument("--output", help="write the scores as JSON to this file (atomically)")
    parser.add_argument(
        "--on-error", choices=("raise", "skip"), default="raise",
        help="bad lines: stop with an error (default) or skip and count them",
    )


def run(args) -> int:
    """Score each file and print a table; with --output also write JSON."""
    import json
    from pathlib import Path

    from ecomharness.errors import UserError
    from ecomharness.metrics.rescore import read_predictions, score_predictions
    from ecomharness.util import write_json_atomic

    report = {}
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        pairs, skipped = read_predictions(path, on_error=args.on_error)
        scores = score_predictions(pairs, kind=args.kind)
        scores["skipped"] = [str(e) for e in skipped]
        report[str(path)] = scores
        print(f"{path}  ({scores['kind']}, n={scores['n']}, skipped={len(skipped)})")
        for metric, value in sorted(scores["metrics"].items()):
            stderr = f" ± {value['stderr']:.4f}" if value["stderr"] is not None else ""
            print(f"  {metric:<18} {value['value']:.4f}{stderr}")
    if args.output:
        write_json_atomic(Path(args.output), report)
        print(f"wrote {args.output}")
    return 0
