"""What cleaning the corpus costs: filters, exact dedup and decontamination beside a plain build.

    .venv/bin/python benchmarks/data/bench_clean.py [--records 100000] [--tasks ecom_icl] [--ray]

On the synthetic corpus of bench_build.py (N domain records, N/4 general), runs in
fresh processes, one after the other on the same files: the plain build, then the same
recipe with every source filtered (length, repetition, characters), `dedup: {exact:
true}` and `decontaminate: {tasks: ...}`. Prints each build's time, its stage times,
peak RSS and what each step removed, and the extra time of the cleaning as a ratio of
the plain build (target: at most 0.5x extra on the local engine); then the same with
near-duplicate removal (MinHash LSH) on as well. With ``--ray`` the three builds run
on the Ray engine too (local Ray, all cores; Ray's start-up not timed), and the output
of each is compared with the local engine's.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import prepare  # noqa: E402

FILTERS = [{"name": "length", "min_chars": 5}, {"name": "repetition", "max_duplicate_line_share": 0.5,
                                                 "max_top_ngram_share": 0.5},
           {"name": "characters", "max_symbol_share": 0.5, "max_markup_share": 0.3}]


def cleaned(recipe_path: Path, tasks: list[str], near: bool = False) -> Path:
    """The same recipe with the three cleaning steps on (``near``: near dedup too)."""
    import yaml

    recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    for source in recipe["sources"]:
        source["filters"] = FILTERS
    recipe["dedup"] = {"exact": True, **({"near": True} if near else {})}
    recipe["decontaminate"] = {"tasks": tasks}
    name = "cleaned_near" if near else "cleaned"
    recipe["output"] = str(Path(recipe["output"]).with_name(name))
    path = recipe_path.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def build_once(recipe_path: str, engine: str = "local") -> None:
    """Run one build in this process and print its figures as JSON."""
    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    chosen = None
    if engine == "ray":
        from ecomharness.data.engine_ray import RayEngine, start_ray

        start_ray(None, lambda *_: None)
        chosen = RayEngine()
    start = time.perf_counter()
    stats = build_dataset(recipe, force=True, log=lambda *_: None, engine=chosen)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "records": stats["records"], "seconds": seconds, "timings": stats["timings_s"],
        "filtered": stats.get("filtered_records", 0), "duplicates": stats.get("dedup", {}).get("removed", 0),
        "near_duplicates": stats.get("dedup", {}).get("near", {}).get("removed", 0),
        "contaminated": sum(stats.get("contamination", {}).get("records", {}).values()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "content": stats["packing"]["content_sha256"],
    }))


def run(recipe: Path, engine: str = "local") -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", str(recipe), "--engine", engine], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Prepare the corpus once, build it plain and cleaned, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tasks", default="ecom_icl")
    parser.add_argument("--ray", action="store_true", help="also run the three builds on the Ray engine")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        build_once(args.one, args.engine)
        return
    with tempfile.TemporaryDirectory() as tmp:
        plain_recipe = prepare(Path(tmp), args.records)
        tasks = args.tasks.split(",")
        recipes = {"plain": plain_recipe, "cleaned": cleaned(plain_recipe, tasks),
                   "+ near": cleaned(plain_recipe, tasks, near=True)}
        plain, clean, near = (run(r) for r in recipes.values())
        on_ray = {name: run(r, "ray") for name, r in recipes.items()} if args.ray else {}
    for name, result in (("plain", plain), ("cleaned", clean), ("+ near", near)):
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in result["timings"].items())
        print(f"{name:>7}: {result['records']:,} records in {result['seconds']:.1f}s ({stages}); "
              f"peak RSS {result['peak_rss_mib']:,.0f} MiB; filtered {result['filtered']:,}, "
              f"duplicates {result['duplicates']:,}, near duplicates {result['near_duplicates']:,}, "
              f"contaminated {result['contaminated']:,}")
    print(f"cleaning's extra time: {clean['seconds'] / plain['seconds'] - 1:.2f}x the plain build "
          f"(filters run while rendering; dedup {clean['timings'].get('dedup', 0):.1f}s, "
          f"decontaminate {clean['timings'].get('decontaminate', 0):.1f}s); with near dedup: "
          f"{near['seconds'] / plain['seconds'] - 1:.2f}x (dedup {near['timings'].get('dedup', 0):.1f}s)")
    local = {"plain": plain, "cleaned": clean, "+ near": near}
    for name, result in on_ray.items():
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in result["timings"].items())
        print(f"ray {name:>7}: {result['seconds']:.1f}s ({stages}); peak RSS of the driver "
              f"{result['peak_rss_mib']:,.0f} MiB; {result['seconds'] / local[name]['seconds']:.2f}x the local engine; "
              f"same output: {result['content'] == local[name]['content']}")
    if on_ray:
        print(f"Ray cleaning's extra time: {on_ray['cleaned']['seconds'] / on_ray['plain']['seconds'] - 1:.2f}x; "
              f"with near dedup: {on_ray['+ near']['seconds'] / on_ray['plain']['seconds'] - 1:.2f}x")


if __name__ == "__main__":
    main()
