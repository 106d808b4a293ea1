"""Data-parallel inline evaluation: one process against two, on the same model and tasks.

    .venv/bin/python benchmarks/eval_overhead/bench_data_parallel.py [--tasks ecom_icl_rc,heldout_bpb] [--docs 40]

Builds a random Bloom (hidden 256, 4 layers), then evaluates it in memory through
``CheckpointEvaluator.evaluate_model``: once in one process, once in two processes of a
gloo group (each a shard of the documents, ``data_parallel=True``), every process with
one torch thread so that two processes use the machine's two cores. Task building is
timed apart from evaluation. Prints both evaluation times, the speed-up, and whether the
two runs' scores are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _model(folder: Path) -> Path:
    from ecomharness.demo.run import task_sample_texts
    from ecomharness.demo.tiny import save_tiny_model

    return save_tiny_model(folder, task_sample_texts(), vocab_size=2000, hidden_size=256, n_layer=4, n_head=4)


def _evaluate(model_dir: str, tasks: list[str], docs: int, data_parallel: bool) -> tuple[float, dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings
    from ecomharness.evaluation.ledger import metrics_of

    torch.set_num_threads(1)
    evaluator = CheckpointEvaluator(EvalSettings(tasks=tuple(tasks), metadata={"max_docs": docs}, batch_size=1))
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if data_parallel:
        torch.distributed.barrier()
    start = time.perf_counter()
    results = evaluator.evaluate_model(model, tokenizer, data_parallel=data_parallel)
    seconds = time.perf_counter() - start
    return seconds, (metrics_of(results) if results else {})


def _worker(rank: int, model_dir: str, tasks: list[str], docs: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    seconds, metrics = _evaluate(model_dir, tasks, docs, data_parallel=True)
    if rank == 0:
        Path(out).write_text(json.dumps({"seconds": seconds, "metrics": metrics}), encoding="utf-8")
    dist.destroy_process_group()


def main() -> None:
    """Print the figures."""
    import torch.multiprocessing as mp

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="ecom_icl_rc,heldout_bpb")
    parser.add_argument("--docs", type=int, default=40, help="documents per task (seeded cap)")
    parser.add_argument("--port", type=int, default=29655)
    args = parser.parse_args()
    os.environ.setdefault("ECOMHARNESS_OFFLINE", "1")
    tasks = [t for t in args.tasks.split(",") if t]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(_model(Path(tmp) / "model"))
        one, one_metrics = _evaluate(model_dir, tasks, args.docs, data_parallel=False)
        out = Path(tmp) / "two.json"
        mp.spawn(_worker, args=(model_dir, tasks, args.docs, args.port, str(out)), nprocs=2, join=True)
        two = json.loads(out.read_text(encoding="utf-8"))
    same = all(abs(two["metrics"][t][m]["value"] - v["value"]) <= 1e-9
               for t, ms in one_metrics.items() for m, v in ms.items())
    print(f"tasks {', '.join(tasks)}, {args.docs} documents per task, one torch thread per process")
    print(f"one process: {one:.1f} s; two processes (data-parallel): {two['seconds']:.1f} s; "
          f"speed-up {one / two['seconds']:.2f}x; scores identical: {same}")


if __name__ == "__main__":
    main()
