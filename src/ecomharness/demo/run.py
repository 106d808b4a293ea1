"""The end-to-end demo: a tiny model built locally, evaluated on bundled tasks.

Stages print one line each with their time. The model is cached under the output
directory (a completion marker says it is whole), so a second run skips building it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ecomharness.resources import bundled_path

DEMO_TASKS = ["ecom_icl", "general_icl"]
# Documents per task: enough to exercise every task while the demo stays quick.
DEMO_LIMIT = 10


def _stage(name: str):
    start = time.perf_counter()
    print(f"[demo] {name} ...", flush=True)
    return lambda detail="": print(
        f"[demo] {name}: done in {time.perf_counter() - start:.1f}s {detail}".rstrip(), flush=True
    )


def _corpus_texts() -> list[str]:
    """Every text line of the bundled task samples: enough for a tokenizer's alphabet."""
    texts = []
    for path in sorted(bundled_path("tasks").rglob("*.json")):
        texts.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return texts


def ensure_model(model_dir: Path) -> Path:
    """Build the tiny tokenizer + Bloom model unless a complete one is already there."""
    from ecomharness.demo.tiny import save_tiny_model

    if (model_dir / "ecomharness_model.json").is_file():
        print(f"[demo] model: cached at {model_dir}", flush=True)
        return model_dir
    done = _stage("build tokenizer and tiny Bloom model")
    save_tiny_model(model_dir, _corpus_texts(), vocab_size=1500)
    done(f"-> {model_dir}")
    return model_dir


def run_demo(out_dir: Path, limit: int | None = None) -> dict:
    """Run every demo stage into ``out_dir`` and return the evaluation's results dict."""
    from ecomharness.cli.eval import run_argv

    out_dir = Path(out_dir).resolve()
    total = time.perf_counter()
    model_dir = ensure_model(out_dir / "model")
    done = _stage(f"evaluate on {', '.join(DEMO_TASKS)} (bundled samples)")
    results_dir = out_dir / "results"
    argv = [
        "--model", "hf",
        "--model_args", f"pretrained={model_dir},device=cpu,dtype=float32",
        "--tasks", ",".join(DEMO_TASKS),
        "--batch_size", "8",
        "--gen_kwargs", "max_gen_toks=16",
        "--output_path", str(results_dir),
    ]
    argv += ["--limit", str(limit or DEMO_LIMIT)]
    code = run_argv(argv)
    if code:
        raise SystemExit(code)
    done()
    latest = max(results_dir.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    results = json.loads(latest.read_text(encoding="utf-8"))
    print(f"[demo] total {time.perf_counter() - total:.1f}s; results: {latest}")
    for group in DEMO_TASKS:
        score = results["results"][group].get("score,none")
        print(f"[demo] {group}: score={score:.3f} (mean of its tasks' primary metrics)")
    print("[demo] the model is untrained (random weights): scores near zero are expected.")
    return results
