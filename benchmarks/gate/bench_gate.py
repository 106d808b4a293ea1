"""The paired gate at scale: 30 tasks x 1,000 documents x 10,000 bootstrap resamples.

    .venv/bin/python benchmarks/gate/bench_gate.py [--tasks 30] [--docs 1000] [--resamples 10000]

Writes two checkpoints' per-document sidecars in the layout every evaluation writes (10
classification tasks: 0/1 score and acc, label rows for macro F1; 10 generation tasks:
ROUGE scores in [0, 1]; 10 extraction tasks: document F1 and span rows for micro F1),
then times, in one process:

- reading both records' sidecars (hash checked) into evidence;
- the gate with a `max_drop` rule (alpha 0.05) on every task's `score`: McNemar for the
  binary ones, the paired bootstrap for the rest;
- the worst case: every task's `score` continuous, so all 30 are bootstrapped;
- one group over all tasks (a stratified bootstrap over 30 strata).

Prints the sidecar size per checkpoint and each time. Target: the gate under 2 s on the
2-core development machine.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from pathlib import Path

LABELS = ("positive", "negative", "neutral", "mixed", "none")
SPANS = [["brand", f"b{i}"] for i in range(20)] + [["color", f"c{i}"] for i in range(10)]


def _doc_ids(task: str, n: int) -> list[str]:
    return [hashlib.sha256(f"{task}/{i}".encode()).hexdigest() for i in range(n)]


def _side(rng: random.Random, tasks: int, docs: int, skill: float, all_continuous: bool) -> dict:
    """One checkpoint's per-document table; ``skill`` shifts every score up."""
    table = {"format": "ecomharness-per-document", "version": 1, "tasks": {}, "groups": {}}
    for t in range(tasks):
        kind = ("generation" if all_continuous else ("classification", "generation", "extraction")[t % 3])
        name = f"task{t:02d}_{kind[:3]}"
        state = random.Random(f"{name}")  # the documents: the same on both sides
        entry = {"doc_ids": _doc_ids(name, docs), "filter": "none", "metrics": {}, "aggregation": {},
                 "higher_is_better": {}}
        if kind == "classification":
            gold = [state.choice(LABELS) for _ in range(docs)]
            pred = [g if rng.random() < 0.5 + skill else rng.choice(LABELS) for g in gold]
            acc = [float(p == g) for p, g in zip(pred, gold)]
            entry["metrics"] = {"score": acc, "acc": acc, "macro_f1": [[[g], [p]] for g, p in zip(gold, pred)],
                                "rougeL": [a * 0.9 for a in acc]}
            entry["aggregation"] = {"score": "mean", "acc": "mean", "macro_f1": "cls_macro_f1", "rougeL": "mean"}
        elif kind == "generation":
            base = [state.random() for _ in range(docs)]
            rouge = [min(1.0, max(0.0, b * 0.6 + skill + rng.gauss(0, 0.1))) for b in base]
            entry["metrics"] = {"score": rouge, "rouge1": rouge, "rouge2": [r * 0.7 for r in rouge], "rougeL": rouge}
            entry["aggregation"] = {m: "mean" for m in entry["metrics"]}
        else:
            golds = [state.sample(SPANS, state.randint(1, 4)) for _ in range(docs)]
            preds = [[s for s in g if rng.random() < 0.5 + skill] + ([rng.choice(SPANS)] if rng.random() < 0.3 else [])
                     for g in golds]
            f1 = [2 * len({tuple(x) for x in g} & {tuple(x) for x in p}) / (len(g) + len(p)) for g, p in zip(golds, preds)]
            rows = [[g, p] for g, p in zip(golds, preds)]
            entry["metrics"] = {"score": f1, "precision": rows, "recall": rows, "f1": rows}
            entry["aggregation"] = {"score": "mean", "precision": "ie_precision", "recall": "ie_recall", "f1": "ie_f1"}
        entry["higher_is_better"] = {m: True for m in entry["metrics"]}
        table["tasks"][name] = entry
    names = sorted(table["tasks"])
    table["groups"]["all"] = {"members": names, "aggregate": {"score": {"weight_by_size": False}}}
    return table


def _record(name: str, step: int, table: dict, folder: Path) -> dict:
    from ecomharness.evaluation.per_document import write
    from ecomharness.metrics.corpus import count_form

    metrics = {}
    for task, entry in table["tasks"].items():
        form = count_form("mean", entry["metrics"]["score"])
        metrics[task] = {"score": {"value": form.value(), "stderr": 0.01}}
    metrics["all"] = {"score": {"value": sum(m["score"]["value"] for m in metrics.values()) / len(metrics),
                                "stderr": 0.005}}
    source = {"origin": "explicit", "source": "/bench", "fingerprint": "f"}
    return {"checkpoint": name, "step": step, "status": "ok", "metrics": metrics,
            "task_versions": {t: 1 for t in metrics}, "data_sources": {t: source for t in table["tasks"]},
            "group_subtasks": {"all": sorted(table["tasks"])},
            "per_document": write(folder, name, table)}


def run(tasks: int, docs: int, resamples: int, all_continuous: bool, folder: Path) -> dict:
    from ecomharness.gate.evidence import from_record
    from ecomharness.gate.policy import parse_policy
    from ecomharness.gate.verdict import run_gate

    rng = random.Random(0)
    base = _record("init", 0, _side(rng, tasks, docs, 0.0, all_continuous), folder)
    cand = _record("checkpoint-1", 1, _side(rng, tasks, docs, 0.01, all_continuous), folder)
    start = time.perf_counter()
    candidate, baseline = from_record(cand, "cand", folder), from_record(base, "base", folder)
    read_s = time.perf_counter() - start
    leaves = sorted(candidate.per_document["tasks"])
    policy = parse_policy({"bootstrap": {"resamples": resamples},
                           "rules": [{"kind": "max_drop", "tasks": leaves, "threshold": 0.0, "alpha": 0.05}]})
    start = time.perf_counter()
    verdict = run_gate(policy, candidate, baseline)
    gate_s = time.perf_counter() - start
    tests = sorted({c.inputs["test"] for c in verdict.checks})
    group_policy = parse_policy({"bootstrap": {"resamples": resamples},
                                 "rules": [{"kind": "max_drop", "tasks": ["all"], "threshold": 0.0, "alpha": 0.05}]})
    start = time.perf_counter()
    group = run_gate(group_policy, candidate, baseline)
    group_s = time.perf_counter() - start
    return {"sidecar_bytes": cand["per_document"]["bytes"], "read_s": read_s, "gate_s": gate_s, "tests": tests,
            "group_s": group_s, "group_test": group.checks[0].inputs["test"]}


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mixed = run(args.tasks, args.docs, args.resamples, False, Path(tmp) / "mixed")
        continuous = run(args.tasks, args.docs, args.resamples, True, Path(tmp) / "continuous")
    print(f"{args.tasks} tasks x {args.docs} documents, {args.resamples:,} resamples")
    print(f"sidecar per checkpoint (mixed task kinds): {mixed['sidecar_bytes'] / 1e6:.2f} MB; "
          f"all generation: {continuous['sidecar_bytes'] / 1e6:.2f} MB")
    print(f"read both sidecars (hash checked): {mixed['read_s']:.2f} s")
    print(f"gate, every task's score (mixed: {', '.join(mixed['tests'])}): {mixed['gate_s']:.2f} s")
    print(f"gate, every task's score bootstrapped ({', '.join(continuous['tests'])}): {continuous['gate_s']:.2f} s")
    print(f"gate, one group over all tasks ({continuous['group_test']}): {continuous['group_s']:.2f} s")


if __name__ == "__main__":
    main()
