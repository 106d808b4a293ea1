"""Per-checkpoint fixed cost of evaluation: the inline evaluator vs one `lm_eval` run per checkpoint.

    .venv/bin/python benchmarks/eval_overhead/bench_eval_overhead.py [--checkpoints 3] [--limit 4]

Same tiny Bloom (saved as a checkpoint), same tasks (ecom_icl + general_icl, `--limit`
documents each), same batch size and seeds. The model's own forward/generate time is
measured inside the inline evaluator; the fixed cost of either way is its wall time
minus that model time (the `lm_eval` process runs the same forward passes). Prints both
per-checkpoint costs, their ratio, and whether every metric is identical.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TASKS = "ecom_icl,general_icl"


def timed_model(model):
    """Wrap forward and generate to add up the time spent in the model itself."""
    spent = {"seconds": 0.0, "depth": 0}
    for name in ("forward", "generate"):
        original = getattr(model, name)

        def wrapper(*args, _original=original, **kwargs):
            # generate() calls forward(): count the outermost call only.
            spent["depth"] += 1
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent["depth"] -= 1
                if spent["depth"] == 0:
                    spent["seconds"] += time.perf_counter() - start

        setattr(model, name, wrapper)
    return spent


def main() -> None:
    """Build a tiny checkpoint, time both ways, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--limit", type=int, default=4)
    args = parser.parse_args()

    import transformers

    from ecomharness.demo.run import task_sample_texts
    from ecomharness.demo.tiny import save_tiny_model
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings
    from ecomharness.evaluation.ledger import metrics_of

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_model(Path(tmp) / "ckpt", task_sample_texts(), vocab_size=800, hidden_size=64, n_layer=2)
        include = subprocess.run([str(BIN / "ecomharness"), "tasks-path"], check=True, capture_output=True,
                                 text=True).stdout.strip()

        # One `lm_eval` process per checkpoint, as a training script calling the CLI would.
        cli_seconds, cli_results = [], None
        for i in range(args.checkpoints):
            out = Path(tmp) / f"cli{i}"
            start = time.perf_counter()
            subprocess.run([str(BIN / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model_dir}",
                            "--device", "cpu", "--tasks", TASKS, "--include_path", include, "--limit", str(args.limit),
                            "--batch_size", "8", "--output_path", str(out)], check=True, capture_output=True)
            cli_seconds.append(time.perf_counter() - start)
            cli_results = json.loads(next(out.rglob("results_*.json")).read_text())

        # The inline evaluator: tasks built once, the in-memory model evaluated each time.
        start = time.perf_counter()
        evaluator = CheckpointEvaluator(EvalSettings(tasks=tuple(TASKS.split(",")), limit=args.limit, batch_size=8))
        setup = time.perf_counter() - start
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
        spent = timed_model(model)
        inline_seconds, model_seconds, inline_results = [], [], None
        for _ in range(args.checkpoints):
            spent["seconds"] = 0.0
            start = time.perf_counter()
            inline_results = evaluator.evaluate_model(model, tokenizer)
            inline_seconds.append(time.perf_counter() - start)
            model_seconds.append(spent["seconds"])

    model_time = sum(model_seconds) / len(model_seconds)
    cli = sum(cli_seconds) / len(cli_seconds)
    inline = sum(inline_seconds) / len(inline_seconds)
    cli_fixed, inline_fixed = cli - model_time, inline - model_time
    ours, theirs = metrics_of(inline_results), metrics_of(cli_results)
    same = all(ours[t][m]["value"] == theirs[t][m]["value"] for t in theirs for m in theirs[t])
    print(f"tasks {TASKS} (limit {args.limit} each), {args.checkpoints} checkpoints, tiny Bloom on CPU")
    print(f"model forward/generate time per checkpoint : {model_time:7.2f} s")
    print(f"lm_eval CLI per checkpoint                 : {cli:7.2f} s  (fixed cost {cli_fixed:6.2f} s)")
    print(f"inline evaluator per checkpoint            : {inline:7.2f} s  (fixed cost {inline_fixed:6.2f} s; "
          f"one-time task setup {setup:.2f} s)")
    print(f"fixed-cost ratio (CLI / inline)            : {cli_fixed / max(inline_fixed, 1e-9):7.1f}x")
    print(f"identical scores on {len(theirs)} tasks/groups   : {same}")


if __name__ == "__main__":
    main()
