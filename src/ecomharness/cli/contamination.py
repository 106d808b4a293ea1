"""Check any corpus for the test documents of lm-eval tasks (ours, a plugin's or lm-eval's own).

Exit code 0 when the check ran (whatever it found), 1 when ``--fail-above`` is given and
a task's found share exceeds it, 2 on bad input, 3 on an internal error.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_FAILED, EXIT_OK

NAME = "contamination"
HELP = "find the test documents of lm-eval tasks in a corpus (n-gram overlap, per task)"
EPILOG = """\
examples:
  ecomharness contamination raw/reviews.jsonl raw/products.parquet --tasks ecom_icl
  ecomharness contamination crawl/ --tasks ecom_icl,general_icl --output contamination.json --fail-above 0
  ecomharness contamination runs/data/cpt --tasks ecom_icl    # a data build's packed dataset, decoded
CORPUS: JSON Lines or Parquet files, folders of them (the --field of each record, default
text), or a `data build` output. A task document is found when a corpus record holds any
of its content n-grams (13 words, or 10 characters for CJK text; see docs/data.md).
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness contamination``."""
    parser.add_argument("corpus", nargs="+", help="JSON Lines / Parquet files or folders, or a data build output")
    parser.add_argument("--tasks", required=True, help="comma-separated task or group names")
    parser.add_argument("--metadata", default=None, help="JSON passed to the tasks, as lm_eval --metadata")
    parser.add_argument("--include_path", default=None, help="extra task folders, as lm_eval --include_path")
    parser.add_argument("--field", default="text", help="the record field holding the text (default: text)")
    parser.add_argument("--ngram-words", type=int, default=13, help="word n-gram length for Latin text (13)")
    parser.add_argument("--ngram-chars", type=int, default=10, help="character n-gram length for CJK text (10)")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="a document is found when more than this share of its n-grams is in one record (0: any)")
    parser.add_argument("--short-similarity", type=float, default=0.85,
                        help="documents shorter than three n-grams: the alignment similarity that confirms a "
                             "candidate (0.85; 0: leave them unchecked)")
    parser.add_argument("--output", default=None, help="write the full report (matched ids and records) as JSON here")
    parser.add_argument("--fail-above", type=float, default=None,
                        help="exit 1 when any task's found share exceeds this (0: any document found)")


def run(args) -> int:
    """Index the tasks' documents, scan the corpus, print a table per task."""
    import json
    from pathlib import Path

    from ecomharness.data.contamination import build_index, parse_contamination, task_documents, task_report
    from ecomharness.data.corpus_text import corpus_texts
    from ecomharness.errors import UserError
    from ecomharness.util import check_share, write_json_atomic

    metadata = None
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except json.JSONDecodeError as exc:
            raise UserError(f"--metadata: not JSON ({exc.msg} at column {exc.colno})") from exc
    if args.fail_above is not None:
        check_share(args.fail_above, "--fail-above")
    spec = parse_contamination({"tasks": args.tasks, "ngram_words": args.ngram_words,
                                "ngram_chars": args.ngram_chars, "threshold": args.threshold,
                                "short_similarity": args.short_similarity}, "options")
    paths = [Path(p) for p in args.corpus]
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    index = build_index(task_documents(list(spec.tasks), metadata, args.include_path), spec)
    print(f"[contamination] indexed {len(index.documents):,} documents of {len(index.totals)} task(s) "
          f"({len(index.grams):,} n-grams)")
    locations: dict[int, list[dict]] = {}
    counts = {"records": 0, "skipped": {}}
    for location, text in corpus_texts(paths, args.field, counts):
        for doc in index.matches(text):
            locations.setdefault(doc, []).append(location)
    for reason, count in sorted(counts["skipped"].items()):
        print(f"[contamination] skipped {count:,} records: {reason}")
    report = task_report(index, locations)
    print(f"[contamination] scanned {counts['records']:,} records")
    print("| task | documents | checked | found | share |")
    print("|---|--:|--:|--:|--:|")
    for task, row in report.items():
        print(f"| {task} | {row['documents']:,} | {row['checked']:,} | {row['found']:,} | {row['share']:.4f} |")
    if args.output:
        matched: dict[str, dict[str, list]] = {}
        for doc, where in sorted(locations.items()):
            task, doc_id = index.documents[doc]
            matched.setdefault(task, {})[str(doc_id)] = where
        for task, row in report.items():
            row["records"] = matched.get(task, {})
        write_json_atomic(Path(args.output), {
            "corpus": [str(p) for p in paths], "field": args.field, "records": counts["records"],
            "skipped": counts["skipped"], "settings": {"ngram_words": spec.ngram_words,
                                                       "ngram_chars": spec.ngram_chars, "threshold": spec.threshold,
                                                       "template_share": spec.template_share,
                                                       "short_similarity": spec.short_similarity},
            "tasks": report})
        print(f"[contamination] wrote {args.output}")
    if args.fail_above is not None:
        over = [t for t, row in report.items() if row["share"] > args.fail_above]
        if over:
            print(f"[contamination] FAILED: {', '.join(over)} above {args.fail_above:g}")
            return EXIT_FAILED
    return EXIT_OK
