"""Demo runs with enough checkpoints for a noise window, for verdict_stability.py.

    .venv/bin/python benchmarks/gate/demo_runs.py OUT [--checkpoints 8] [--steps 240] \
        [--runs graph domain separate] [--cache DIR] [--watch]

The demo (``ecomharness demo``) keeps only the final checkpoint of its baselines: too
few for the checkpoint noise of the last 3 or 5. ``--steps`` defaults to 240, the CPT
length of the demo when docs/statistics.md's figures were measured (the demo now trains
480). This calls the demo's own stages (``demo/run.py``: corpus, tokenizer, data
builds, base model and its evaluation, then ``run_cpt``) with ``DemoConfig(checkpoints=N)``, which changes
only the CPT runs (a checkpoint every ``cpt_steps // N`` steps, each evaluated inline on
the cheap profile: held-out bits per byte, ecom_icl_rc, shop_rc), and writes the runs
to ``OUT/cpt_graph``, ``OUT/cpt_domain``, ``OUT/cpt_separate``.

``--cache DIR``: reuse the cache of an earlier demo (its ``OUT/cache``, built with the
default DemoConfig) where it is, read-only: the cached stages' markers record absolute
paths, so the cache is read at its own path, and the script stops before any cached
stage would be built again or removed (a cache from another shop version, task
version or size). Without it, ``OUT/cache`` is built cold: corpus, tokenizer, data
builds, the base model's pre-training and its evaluation on both profiles.

The generative suite on the final checkpoint (``watch``, the demo's async profile) is
skipped unless ``--watch``: its tasks are measured on one checkpoint only, so neither
the stability table nor the noise table reads them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

RUNS = ("graph", "domain", "separate")


class CacheWouldChange(RuntimeError):
    """A reused cache's stage would be built again or removed."""


def _guard(cache: Path):
    """``shutil.rmtree`` refusing paths in ``cache``, and a log that stops at the start
    of any stage that builds (the demo logs ``[demo] STAGE ...`` before building)."""
    real_rmtree = shutil.rmtree
    cache = cache.resolve()

    def rmtree(path, *args, **kwargs):
        p = Path(path).resolve()
        if p == cache or cache in p.parents:
            raise CacheWouldChange(f"the reused cache would lose {p}")
        return real_rmtree(path, *args, **kwargs)

    def log(message: str) -> None:
        print(message, flush=True)
        if message.endswith(" ..."):
            raise CacheWouldChange(f"the reused cache would be rebuilt: {message}")

    return rmtree, log


def main() -> None:
    """Prepare (or reuse) the demo's cache, then train the chosen CPT runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoints", type=int, default=8)
    parser.add_argument("--steps", type=int, default=240, help="CPT steps (240: docs/statistics.md's figures)")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=["graph", "domain"])
    parser.add_argument("--cache", type=Path, help="an earlier demo's cache, reused read-only at its own path")
    parser.add_argument("--watch", action="store_true", help="also evaluate the final checkpoint's generative suite")
    args = parser.parse_args()

    from ecomharness.demo import run as demo
    from ecomharness.demo.shop import shop_sources

    cfg = demo.DemoConfig(checkpoints=args.checkpoints, cpt_steps=args.steps)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache.resolve() if args.cache else out / "cache"
    log = print
    if args.cache:
        rmtree, log = _guard(cache)
        shutil.rmtree = rmtree
    total = time.perf_counter()
    paths = demo.prepare_corpus(cache, cfg, log)
    tokenizer = demo.prepare_tokenizer(cache, paths, cfg, log)
    general = shop_sources(paths, kinds=("general",), filters=demo.FILTERS)
    ratio_2_1 = {"general_to_domain": 2.0, "general_languages": {"zh": 1, "en": 1}}
    base_data = demo.build_data(cache, "general", general, tokenizer, cfg,
                                ratio={"general_languages": {"zh": 1, "en": 1}}, log=log)
    variants = {  # as run_demo builds them: name, sources, mixer, ratio
        "graph": ("graph_2to1", shop_sources(paths, filters=demo.FILTERS), None, ratio_2_1),
        "domain": ("domain", shop_sources(paths, kinds=("domain",), filters=demo.FILTERS), None,
                   {"general_languages": None}),
        "separate": ("separate", shop_sources(paths, filters=demo.FILTERS), {"name": "separate"}, ratio_2_1),
    }
    # Every run's inline profile reads the 2:1 build's held-out text: it is built first.
    data = {"graph": demo.build_data(cache, "graph_2to1", variants["graph"][1], tokenizer, cfg, ratio=ratio_2_1,
                                     log=log)}
    for run in args.runs:
        name, sources, mixer, ratio = variants[run]
        if run not in data:
            data[run] = demo.build_data(cache, name, sources, tokenizer, cfg, mixer=mixer, ratio=ratio, log=log)
    base = demo.pretrain_base(cache, tokenizer, base_data, cfg, log)
    spec = demo._train_recipe(out / "x", {"path": str(base)}, tokenizer, data["graph"], 1, 1, cfg, "inline",
                              True).eval
    base_records = demo.evaluate_base(cache, base, spec, log)
    print(f"[demo_runs] cache ready ({time.perf_counter() - total:.0f}s)", flush=True)

    if not args.watch:
        import ecomharness.train.watch as watch

        class _Skipped:
            evaluated = 0

        watch.watch_run = lambda *a, **k: _Skipped()
    for run in args.runs:
        start = time.perf_counter()
        records, summary = demo.run_cpt(out, f"cpt_{run}", base, base_records, tokenizer, data[run], cfg,
                                        every_checkpoint=True, log=print, base_folder=cache)
        print(f"[demo_runs] cpt_{run}: {len(records) - 1} trained checkpoints, "
              f"{time.perf_counter() - start:.0f}s", flush=True)
    print(f"[demo_runs] total {time.perf_counter() - total:.0f}s", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    main()
