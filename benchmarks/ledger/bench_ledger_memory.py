"""Peak memory of `ecomharness gate` and `ecomharness report` on a large ledger.

    .venv/bin/python benchmarks/ledger/bench_ledger_memory.py [--records 100000] [--tasks 12]

Writes a run directory whose ledger holds an ``init`` record and ``--records`` checkpoint
records shaped as training writes them (every task's metrics with stderrs, versions,
n-samples, n-shot and its full data-source record, the evaluation settings), then runs
`gate --checkpoint last` (against the run's init) and `report` as separate processes and
prints each one's peak resident memory (``wait4``'s ``ru_maxrss``) beside the ledger's
size. The target (issue 33): below 1 GiB for 100,000 records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _record(step: int, tasks: list[str], value: float) -> dict:
    metrics, sources = {}, {}
    for i, task in enumerate(tasks):
        metrics[task] = {m: {"value": value + i / 1000, "stderr": 0.01} for m in
                         ("score", "acc", "rougeL", "missing", "ambiguous", "macro_f1")}
        sources[task] = {
            "origin": "explicit", "source": f"/data/EcomInstruct/{task}/test.json", "fingerprint": "f" * 64,
            "fewshot_source": f"40 documents held out of /data/EcomInstruct/{task}/test.json",
            "records_in_file": 500, "documents": 460, "documents_hash": "d" * 64, "fewshot_hash": "e" * 64,
            "max_docs": 1000, "data_seed": 1234, "skipped": [], "held_out": 40,
            "skipped_reasons": {}, "left_out_by_cap": 0, "without_gold": 0,
            "note": "scored on the user's copy of the public release; every record accounted for " * 4,
        }
    return {
        "checkpoint": "init" if step == 0 else f"checkpoint-{step}", "step": step, "status": "ok",
        "task_set": "inline", "wall_time": 1_700_000_000.0 + step, "eval_seconds": 12.5, "tokens_seen": step * 4096,
        "epoch": step / 1000, "metrics": metrics, "task_versions": {t: 1.2 for t in tasks},
        "n_samples": {t: {"original": 500, "effective": 460} for t in tasks}, "n_shot": {t: 3 for t in tasks},
        "data_sources": sources, "group_subtasks": {}, "groups": [],
        "settings": {"tasks": tasks, "limit": None, "subset": None, "num_fewshot": None, "batch_size": 8,
                     "seed": 1234, "metadata": {}},
        "versions": {"ecomharness": "0.1.0", "lm_eval": "0.4.13", "transformers": "5.x", "torch": "2.13.0"},
    }


def write_run(folder: Path, records: int, n_tasks: int) -> Path:
    """A run directory whose ledger holds ``records`` checkpoints (and init)."""
    tasks = [f"ecom_task_{i:02d}" for i in range(n_tasks)]
    ledger = folder / "eval" / "ledger.jsonl"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("w", encoding="utf-8") as out:
        for step in range(0, records + 1):
            out.write(json.dumps(_record(step * 10, tasks, 0.3 + (step % 50) / 1000), sort_keys=True) + "\n")
    return folder


def peak_rss(args: list[str]) -> tuple[int, float, int, str]:
    """Run a command; return (exit code, seconds, peak RSS in bytes, last output line)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in output.splitlines() if line.strip()]
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss * 1024, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        run = write_run(tmp / "run", args.records, args.tasks)
        size = (run / "eval" / "ledger.jsonl").stat().st_size
        print(f"ledger: {args.records:,} checkpoint records + init, {args.tasks} tasks each, "
              f"{size / 2**30:.2f} GiB (written in {time.perf_counter() - start:.0f} s)")
        policy = tmp / "policy.yaml"
        policy.write_text("rules:\n  - {kind: min, tasks: [ecom_task_00], threshold: 0.1}\n"
                          "  - {kind: max_drop, tasks: ['ecom_task_*'], threshold: 0.05}\n")
        commands = {
            "gate --checkpoint last": [str(BIN / "ecomharness"), "gate", "--policy", str(policy), "--ledger",
                                       str(run), "--checkpoint", "last", "--quiet"],
            "report": [str(BIN / "ecomharness"), "report", str(run)],
        }
        for name, command in commands.items():
            code, seconds, peak, last = peak_rss(command)
            print(f"{name:<24} exit {code}  {seconds:6.1f} s  peak RSS {peak / 2**30:.3f} GiB "
                  f"({peak / size:.2f}x the ledger)  | {last[:100]}")


if __name__ == "__main__":
    main()
