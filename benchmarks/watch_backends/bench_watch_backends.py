"""`ecomharness watch` per checkpoint: the hf backend against the vllm backend, side by side.

    .venv/bin/python benchmarks/watch_backends/bench_watch_backends.py [--checkpoints 2] [--limit 10]
        [--tasks ecom_icl_gen] [--max-gen-toks 32] [--hidden 128] [--layers 2] [--compile]

Needs `make vllm` (.venv-vllm). One tiny random Llama (hidden 128, 2 heads: head_dim 64,
which vLLM's CPU attention accepts), saved as `--checkpoints` checkpoints of two run
directories, one evaluated by `watch` on each backend: the same tasks, documents,
generation length, float32 and greedy decoding, through the real path (pin, evaluate,
record). Prints each checkpoint's evaluation time from the ledgers, the vLLM engine's
start within it, and whether the two ledgers' metrics are identical. `--compile` lets
vLLM torch.compile the model (its default); without it the engine runs eager, which
starts faster. No GPU here: these are CPU figures, and on a shared machine they move
with its load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml


def tiny_llama(out: Path, hidden: int, layers: int) -> Path:
    """A random Llama with 2 heads of ``hidden / 2`` and a tokenizer trained on the task samples."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ecomharness.demo.run import task_sample_texts
    from ecomharness.demo.tiny import train_tokenizer

    tokenizer = train_tokenizer(task_sample_texts(), vocab_size=800, out_dir=out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(str(out))
    return out


def run_dir(root: Path, model: Path, profile: dict, checkpoints: int) -> Path:
    """A run directory whose kept recipe has ``profile`` as eval.async, with ``checkpoints``
    saves (copies of ``model``)."""
    root.mkdir(parents=True)
    raw = {"run_dir": str(root), "model": {"path": str(model)}, "data": {"path": str(root / "no-data")},
           "eval": {"async": profile, "on_start": False}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    for step in range(1, checkpoints + 1):
        target = root / f"checkpoint-{step}"
        shutil.copytree(model, target)
        (target / "trainer_state.json").write_text(json.dumps({"global_step": step, "save_steps": 1,
                                                               "max_steps": checkpoints}))
    return root


def differences(hf: dict, vllm: dict) -> list[str]:
    """``task metric: hf {value, stderr} vs vllm {...}`` for each metric the two differ on."""
    found = []
    for task in sorted(set(hf) | set(vllm)):
        for metric in sorted(set(hf.get(task, {})) | set(vllm.get(task, {}))):
            a, b = hf.get(task, {}).get(metric), vllm.get(task, {}).get(metric)
            if a != b:
                found.append(f"{task} {metric}: hf {a} vs vllm {b}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10, help="documents per task")
    parser.add_argument("--tasks", default="ecom_icl_gen", help="comma-separated tasks or groups")
    parser.add_argument("--max-gen-toks", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="let vLLM torch.compile (slower start)")
    args = parser.parse_args()

    from ecomharness.evaluation import vllm_backend
    from ecomharness.evaluation.ledger import read_ledger
    from ecomharness.train.watch import watch_run

    vllm_backend.find_python()  # fail now, with `make vllm` in the message, not per checkpoint
    starts: dict[str, float] = {}
    evaluate = vllm_backend.VLLMBackend.evaluate

    def timed(self, evaluator, checkpoint, **kwargs):  # the engine's start, within each evaluation
        try:
            return evaluate(self, evaluator, checkpoint, **kwargs)
        finally:
            starts[Path(checkpoint).name.split("@")[0]] = self.last_load_seconds

    vllm_backend.VLLMBackend.evaluate = timed
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    profile = {"tasks": tasks, "limit": args.limit, "max_gen_toks": args.max_gen_toks, "batch_size": 8}
    engine = {"gpu_memory_utilization": 0.1, "enforce_eager": not args.compile}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = tiny_llama(root / "model", args.hidden, args.layers)
        seconds, ledgers = {}, {}
        for name, extra in (("hf", {"backend": "hf"}), ("vllm", {"backend": "vllm", "vllm": engine})):
            run = run_dir(root / name, model, {**profile, **extra}, args.checkpoints)
            start = time.perf_counter()
            result = watch_run(run, once=True, device="cpu" if name == "hf" else None, log_fn=lambda *_: None)
            seconds[name] = time.perf_counter() - start
            if result.errors:
                print(f"{name}: evaluations failed: {result.errors}", file=sys.stderr)
                return 1
            ledgers[name] = {r["checkpoint"]: r for r in read_ledger(run / "eval" / "ledger.jsonl")}

    print(f"tasks {','.join(tasks)}, {args.limit} documents each, max_gen_toks {args.max_gen_toks}, Llama hidden "
          f"{args.hidden} x {args.layers} layers, float32, greedy; vLLM {'compiled' if args.compile else 'eager'}")
    print(f"{'checkpoint':<14}{'hf s':>9}{'vllm s':>9}{'(engine start)':>16}{'same metrics':>14}")
    for name in sorted(ledgers["hf"], key=lambda n: ledgers["hf"][n]["step"]):
        hf, vllm = ledgers["hf"][name], ledgers["vllm"][name]
        same = hf["metrics"] == vllm["metrics"]
        print(f"{name:<14}{hf['eval_seconds']:>9.1f}{vllm['eval_seconds']:>9.1f}{starts.get(name, float('nan')):>16.1f}"
              f"{'yes' if same else 'NO':>14}")
        for line in differences(hf["metrics"], vllm["metrics"]):
            print(f"    {line}")
    print(f"whole watch (task building included): hf {seconds['hf']:.1f} s, vllm {seconds['vllm']:.1f} s")
    return 0


if __name__ == "__main__":  # the vLLM worker is a separate process; no spawn re-imports this file
    sys.exit(main())
