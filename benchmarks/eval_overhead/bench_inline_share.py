"""In-loop evaluation's share of training wall time, for the demo's CPT recipe.

    .venv/bin/python benchmarks/eval_overhead/bench_inline_share.py [--out runs/bench_share] [--steps 240]

Runs the demo's CPT (the base model, data and tokenizer of `make demo`, from its cache
``--cache runs/demo/cache``, built there if absent) twice, one after the other on the same machine:

- ``cheap``: the demo's inline profile (held-out bits per byte and zero-shot ranked
  choice on a seeded subset per task), the generative suite left to ``watch``;
- ``generative``: the generative suite (ecom_icl and general_icl, every bundled
  document) evaluated inline at every checkpoint, as the demo did before profiles.

For each it prints the training seconds, the inline evaluation seconds (every chosen
save; ``init`` is evaluated in the loop too) and their share of the run's wall time.
The target for ``cheap`` is at most 10%.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path


def _run(out: Path, name: str, base: Path, tokenizer: Path, data: Path, cfg, inline: dict) -> dict:
    from ecomharness.demo.run import _train_recipe
    from ecomharness.train.recipe import parse_recipe
    from ecomharness.train.run import run_training

    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    raw = _train_recipe(run_dir, {"path": str(base)}, tokenizer, data, cfg.cpt_steps, cfg.cpt_steps // cfg.checkpoints,
                        cfg, "inline", True).to_raw()
    raw["eval"] = {"on_start": True, "every_n_saves": 1, "inline": inline}
    recipe = parse_recipe(raw)
    start = time.perf_counter()
    summary = run_training(recipe, log=lambda *_: None)
    wall = time.perf_counter() - start
    return {"profile": name, "train_s": summary["train_seconds"], "eval_s": summary["eval_seconds"],
            "wall_s": wall, "share": summary["eval_seconds"] / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_share")
    parser.add_argument("--cache", default="runs/demo/cache", help="the demo's cache (shared with `make demo`)")
    parser.add_argument("--steps", type=int, default=240, help="CPT steps (240: the figures in its docs; the demo now trains 480)")
    args = parser.parse_args()

    from ecomharness.demo import run as demo
    from ecomharness.demo.shop import shop_sources

    cfg = dataclasses.replace(demo.DemoConfig(), cpt_steps=args.steps)
    out = Path(args.out).resolve()
    cache = Path(args.cache).resolve()
    paths = demo.prepare_corpus(cache, cfg)
    tokenizer = demo.prepare_tokenizer(cache, paths, cfg)
    base_data = demo.build_data(cache, "general", shop_sources(paths, kinds=("general",)), tokenizer, cfg,
                                ratio={"general_languages": {"zh": 1, "en": 1}})
    data = demo.build_data(cache, "graph_2to1", shop_sources(paths), tokenizer, cfg,
                           ratio={"general_to_domain": 2.0, "general_languages": {"zh": 1, "en": 1}})
    base = demo.pretrain_base(cache, tokenizer, base_data, cfg)
    cheap = demo._train_recipe(out / "x", {"path": str(base)}, tokenizer, data, 1, 1, cfg, "inline", True).eval.inline
    profiles = {
        "cheap": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cheap).items()
                  if v is not None},
        "generative": {"tasks": list(demo.ASYNC_TASKS), "limit": cfg.eval_limit, "max_gen_toks": cfg.max_gen_toks,
                       "batch_size": 16},
    }
    rows = [_run(out, name, base, tokenizer, data, cfg, inline) for name, inline in profiles.items()]
    evaluations = cfg.checkpoints + 1
    print(f"\nCPT of the demo's base, {cfg.cpt_steps} steps, {evaluations} inline evaluations "
          f"(init and {cfg.checkpoints} saves), one run after the other:\n")
    print("| inline profile | training s | inline evaluation s | wall s | evaluation share |")
    print("|---|--:|--:|--:|--:|")
    for row in rows:
        print(f"| {row['profile']} | {row['train_s']:.1f} | {row['eval_s']:.1f} | {row['wall_s']:.1f} | "
              f"{row['share']:.1%} |")
    cheap_row, full_row = rows
    print(f"\nthe cheap profile's evaluation takes {cheap_row['eval_s'] / full_row['eval_s']:.2f}x the time of the "
          f"generative one; target share <= 10%: {'met' if cheap_row['share'] <= 0.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
