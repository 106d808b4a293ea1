"""Re-score saved predictions with ecomharness's Chinese-aware metrics.

Takes lm-eval ``samples_*.jsonl`` files (from ``--log_samples``) or JSON Lines of
``{"doc": {...}, "prediction": "..."}``; use it to fix runs scored with CJK-blind ROUGE
or to score the outputs of a model behind an API.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "score"
HELP = "re-score predictions (lm-eval samples or {doc, prediction} JSON Lines)"
EPILOG = """\
examples:
  ecomharness score results/model/samples_ecom_icl_tig_2026-01-01.jsonl
  ecomharness score preds.jsonl --kind classification --output scores.json
document fields each kind reads (see ecomharness.metrics.lmeval):
  generation: target | classification: target, label_set | extraction: gold_spans,
  extraction_format | reading: answers | headlines: target, label_set, label_type |
  ner: tokens, bio_labels | finben_classification (FLARE FPB, FiQA-SA; also FinBen's
  acc_finben and f1_finben): target, label_set
samples of an installed task (lm-eval's samples_<task>_<date>.jsonl, or a record's
"task" field) are scored by the task's own process_results and metric_list, plugins'
tasks included, so every metric the task defines is re-scored.
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness score``."""
    from ecomharness.evaluation.rescore import TASK_KINDS

    parser.add_argument("files", nargs="+", help="samples_*.jsonl or {doc, prediction} JSON Lines")
    parser.add_argument("--kind", choices=TASK_KINDS,
                        help="how to score (default: as the file's task scores, every metric it defines, when "
                             "the task is installed; else each document's kind, else a reported guess from its "
                             "fields)")
    parser.add_argument("--output", help="write the scores as JSON to this file (atomically)")
    parser.add_argument(
        "--on-error", choices=("raise", "skip"), default="raise",
        help="bad lines: stop with an error (default) or skip and count them",
    )


def run(args) -> int:
    """Score each file and print a table per task and kind; with --output also write JSON."""
    from pathlib import Path

    from ecomharness.errors import UserError
    from ecomharness.evaluation.rescore import read_predictions, score_file, task_of_file, task_scoring
    from ecomharness.util import write_json_atomic

    if args.output and Path(args.output).is_dir():
        raise UserError(f"--output {args.output}: is a directory; give a file name such as scores.json")
    report = {}
    loaded = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        pairs, skipped = read_predictions(path, on_error=args.on_error)
        loaded.append((path, pairs, skipped))
    tasks = {task_of_file(path) for path, _, _ in loaded} | {
        doc["__task__"] for _, pairs, _ in loaded for doc, _ in pairs if "__task__" in doc}
    # Each installed task's own scoring: every metric it defines is re-scored.
    known = task_scoring(sorted(t for t in tasks if t)) if args.kind is None else {}
    for path, pairs, skipped in loaded:
        results = score_file(pairs, kind=args.kind, file_task=task_of_file(path), known=known)
        for scores in results:
            scores["skipped"] = [str(e) for e in skipped]
        report[str(path)] = results[0] if len(results) == 1 else {"by_task_and_kind": results}
        for scores in results:
            task = f"task {scores['task']}, " if scores["task"] else ""
            how = f"scored by {scores['scorer']}" if scores.get("scorer") else \
                f"{scores['kind']} from the {scores['kind_source']}"
            print(f"{path}  ({task}{how}, n={scores['n']}, skipped={len(skipped)})")
            if scores["kind_source"].startswith("guessed"):
                print(f"  warning: no task or document kind says how to score these {scores['n']} documents; "
                      f"scored as {scores['kind']} from their fields (pass --kind to decide)")
            for metric, value in sorted(scores["metrics"].items()):
                stderr = f" ± {value['stderr']:.4f}" if value["stderr"] is not None else ""
                print(f"  {metric:<18} {value['value']:.4f}{stderr}")
    if args.output:
        try:
            write_json_atomic(Path(args.output), report)
        except OSError as exc:
            raise UserError(f"--output {args.output}: cannot be written ({exc.strerror or exc})") from exc
        print(f"wrote {args.output}")
    return EXIT_OK
