"""Step time and peak memory of LSSD (Mix-CPT) against plain CPT, same tiny recipe, one run.

    .venv/bin/python benchmarks/mixcpt/bench_lssd.py [--steps 60]

Builds a small synthetic CPT set, then trains the same Bloom (192 hidden, 4 layers,
seq 256, batch 8) under DeepSpeed ZeRO-2 + CPU offload three times, each in a fresh
process: plain CE, LSSD with the frozen teacher, LSSD with the self teacher. Prints the
mean step time and the process's peak RSS, and both as ratios to plain CPT.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"plain": None, "lssd (frozen teacher)": "frozen", "lssd (self teacher)": "self"}


def prepare(root: Path) -> None:
    """Corpus, tokenizer and a `data build` output under ``root``."""
    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import parse_recipe
    from ecomharness.demo.shop import shop_sources, write_shop
    from ecomharness.demo.tiny import train_tokenizer

    paths = write_shop(root / "raw", n_products=1500, n_general=4000, seed=0)
    texts = [json.loads(line)["text"] for p in paths.values() for line in p.read_text(encoding="utf-8").splitlines()]
    train_tokenizer(texts, vocab_size=4000, out_dir=root / "tok")
    build_dataset(parse_recipe({"output": str(root / "data"), "tokenizer": str(root / "tok"), "seq_len": 256,
                                "sources": shop_sources(paths)}), log=lambda *_: None)


def train_once(root: Path, teacher: str | None, steps: int) -> None:
    """One training run in this process; prints step time and peak RSS as JSON."""
    from ecomharness.train.recipe import parse_recipe
    from ecomharness.train.run import run_training

    raw = {"run_dir": str(root / f"run_{teacher}"), "tokenizer": str(root / "tok"),
           "model": {"init": {"architecture": "bloom", "hidden_size": 192, "n_layer": 4, "n_head": 4}},
           "data": {"path": str(root / "data")}, "deepspeed": "zero2_offload",
           "training": {"max_steps": steps, "per_device_train_batch_size": 8, "learning_rate": 3e-3,
                        "save_steps": steps, "logging_steps": steps, "seed": 0},
           "eval": {"mode": "off"}}
    if teacher:
        raw["loss"] = {"lssd": {"enabled": True, "weight": 0.5, "temperature": 2.0, "teacher": teacher}}
    start = time.perf_counter()
    summary = run_training(parse_recipe(raw), log=lambda *_: None)
    print(json.dumps({"step_s": summary["train_seconds"] / steps, "wall_s": time.perf_counter() - start,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    """Prepare once, train each variant in its own process, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train_once(Path(args.one[0]), None if args.one[1] == "none" else args.one[1], args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare(root)
        results = {}
        for label, teacher in VARIANTS.items():
            out = subprocess.run([sys.executable, __file__, "--one", str(root), teacher or "none", "--steps",
                                  str(args.steps)], check=True, capture_output=True, text=True)
            results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    plain = results["plain"]
    print(f"Bloom 192x4, seq 256, batch 8, {args.steps} steps, DeepSpeed ZeRO-2 + CPU offload, CPU")
    for label, r in results.items():
        print(f"{label:<22} step {r['step_s'] * 1000:7.1f} ms ({r['step_s'] / plain['step_s']:.2f}x)   "
              f"peak RSS {r['peak_rss_mib']:7.0f} MiB ({r['peak_rss_mib'] / plain['peak_rss_mib']:.2f}x)")


if __name__ == "__main__":
    main()
