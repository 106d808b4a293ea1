"""Expected values for the Shopping MMLU scoring tests, computed by the benchmark's own code.

Not a test and not part of ecomharness: it runs, in a scratch environment, the published
skill-wise evaluation functions of Shopping MMLU on the fixed outputs of
``shopping_mmlu_cases.json`` and writes what they return back into that file
(``expected``). The tests then compare ecomharness's scoring with those numbers. Nothing of
the benchmark's code is copied here; it is imported from a checkout.

How the committed values were made (2026-12-06)::

    # the benchmark's code: github.com/KL4805/ShoppingMMLU at 7b118da15635e0d61c45fe1713420a344ac5b738
    git --git-dir=MIRROR archive 7b118da skill_wise_eval | tar -x -C /tmp/smmlu
    # its BLEU is `evaluate.load('sacrebleu')`, the metric script of github.com/huggingface/evaluate
    # (at a7dd338386a4fae9a1767e05eb9ef9479513d9e8), loaded here from a checkout as there is no hub
    git --git-dir=MIRROR archive a7dd338 metrics/sacrebleu | tar -x -C /tmp/evalrepo
    python3 -m venv /tmp/smvenv
    /tmp/smvenv/bin/pip install rouge-score==0.1.2 sacrebleu==2.6.0 evaluate==0.4.6 nltk==3.10.4 numpy==2.4.6
    /tmp/smvenv/bin/python tests/reference/run_shopping_mmlu.py /tmp/smmlu/skill_wise_eval \\
        /tmp/evalrepo/metrics/sacrebleu tests/reference/shopping_mmlu_cases.json

Only ``sentence_transformers`` is stubbed (``metrics.py`` imports it at the top; the
similarity metrics need a model and are not reproduced).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import types


def main(benchmark_dir: str, sacrebleu_script: str, cases_path: str) -> None:
    """Run the benchmark's per-question functions and its per-task aggregation on every
    case and write ``expected`` (per case) and ``task_scores`` (per task) into the file."""
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The similarity metrics are not reproduced: a stub stands in for the import only.
    sys.modules.setdefault("sentence_transformers", types.SimpleNamespace(SentenceTransformer=None))
    import evaluate

    load = evaluate.load
    # `evaluate.load('sacrebleu')` fetches the script from the hub; the same script from a checkout.
    evaluate.load = lambda name, *a, **k: load(sacrebleu_script if name == "sacrebleu" else name, *a, **k)
    sys.path.insert(0, benchmark_dir)
    import metrics as bench  # skill_wise_eval/metrics.py

    import numpy as np

    with open(cases_path, encoding="utf-8") as handle:
        data = json.load(handle)
    per_task: dict[str, tuple[str, list]] = {}
    for case in data["cases"]:
        answer, gold, metric = case["answer"], copy.deepcopy(case["gold"]), case["metric"]
        # Each call as skill_evaluation.py makes it for that metric.
        if metric == "accuracy":
            value = bench.accuracy(answer, str(gold))
        elif metric == "hit rate@3":
            value = bench.hit_rate(answer, gold)
        elif metric == "ndcg":
            value = bench.ndcg_eval(answer, gold)
        elif metric == "micro f1":
            value = list(bench.tp_fp_fn(answer, gold))
        elif metric == "rougel":
            value = bench.rougel(answer, gold)
        elif metric == "bleu":
            value = bench.bleu(answer, gold)
        else:
            raise ValueError(metric)
        case["expected"] = value if isinstance(value, list) else float(value)
        per_task.setdefault(case["task"], (metric, []))[1].append(value)
    # The per-task score and the mean over tasks, as skill_evaluation.py aggregates.
    scores = {task: float(bench.compute_f1_score(values) if metric == "micro f1" else np.mean(values))
              for task, (metric, values) in per_task.items()}
    data["task_scores"] = scores
    data["track_wise"] = float(np.mean(list(scores.values())))
    with open(cases_path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
