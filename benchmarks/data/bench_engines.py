"""`data build` on both engines: the local engine and Ray Data on this one machine.

    .venv/bin/python benchmarks/data/bench_engines.py [--records 1000000] [--scaling 125000 250000 500000 1000000]
        [--records-per-block 20000]

1. Both engines on the same corpus of N domain records (plus N/4 general ones, the
   corpus of bench_build.py): records/s and tokens/s of each, the Ray engine's overhead
   on one machine as the ratio of the two wall times, Ray's start-up apart, and a check
   that both wrote the same content (stats.json's content_sha256).
2. Weak scaling of the Ray engine: corpora of growing size at a fixed number of records
   per block (so the number of blocks grows with the corpus); on a fixed machine the
   evidence of scaling is that the time per block stays flat: no stage (shuffle, driver
   step) grows faster than the data.

Each build runs in a fresh process, the Ray ones each with a fresh local Ray instance
(``ray.init``, all cores). Corpus generation is not timed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import RECORDS_PER_PRODUCT, prepare  # noqa: E402


def build_once(recipe_path: str, engine: str, blocks: int | None) -> None:
    """Run one build in this process and print its figures as JSON."""
    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    ray_start = 0.0
    if engine == "ray":
        import ray

        from ecomharness.data.engine_ray import RayEngine, start_ray

        start = time.perf_counter()
        start_ray(None, lambda *_: None)
        ray_start = time.perf_counter() - start
        start = time.perf_counter()
        stats = build_dataset(recipe, force=True, engine=RayEngine(blocks=blocks), log=lambda *_: None)
        seconds = time.perf_counter() - start
        ray.shutdown()
    else:
        start = time.perf_counter()
        stats = build_dataset(recipe, force=True, log=lambda *_: None)
        seconds = time.perf_counter() - start
    print(json.dumps({
        "records": stats["records"], "seconds": seconds, "ray_start_s": ray_start,
        "tokens": sum(s["tokens"] for s in stats["sources"]), "content": stats["packing"]["content_sha256"],
        "timings": stats["timings_s"], "pieces": stats.get("engine", {}).get("read_pieces"),
    }))


def run(recipe: Path, engine: str, blocks: int | None = None) -> dict:
    """One build in a fresh process; its figures."""
    command = [sys.executable, __file__, "--one", str(recipe), "--engine", engine]
    if blocks:
        command += ["--blocks", str(blocks)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{engine} build failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Prepare the corpora, run the builds, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--scaling", type=int, nargs="*", default=[125_000, 250_000, 500_000, 1_000_000])
    parser.add_argument("--records-per-block", type=int, default=20_000)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--blocks", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        build_once(args.one, args.engine, args.blocks)
        return
    with tempfile.TemporaryDirectory() as tmp:
        recipes = {}
        for n in sorted({args.records, *args.scaling}):
            recipes[n] = prepare(Path(tmp) / str(n), n)
        blocks = max(1, round(args.records * 1.25 / args.records_per_block))
        local = run(recipes[args.records], "local")
        on_ray = run(recipes[args.records], "ray", blocks)
        print(f"\n## Both engines, {args.records:,} domain records (+{args.records // 4:,} general), "
              f"{local['tokens']:,} tokens\n")
        print("| engine | wall s | records/s | tokens/s | read+tokenize s | mix s | pack s |")
        print("|---|--:|--:|--:|--:|--:|--:|")
        for name, r in (("local", local), (f"ray ({on_ray['pieces']} read pieces)", on_ray)):
            t = r["timings"]
            print(f"| {name} | {r['seconds']:.1f} | {r['records'] / r['seconds']:,.0f} | "
                  f"{r['tokens'] / r['seconds']:,.0f} | {t['read_tokenize']:.1f} | {t['mix']:.1f} | {t['pack']:.1f} |")
        print(f"\nRay engine / local engine wall time: {on_ray['seconds'] / local['seconds']:.2f}x "
              f"(plus {on_ray['ray_start_s']:.1f} s to start Ray); same content: {on_ray['content'] == local['content']}")
        if args.scaling:
            print(f"\n## Ray engine, weak scaling at about {args.records_per_block:,} records per block\n")
            print("| domain records | blocks | read pieces | wall s | s per block | s per added block |")
            print("|--:|--:|--:|--:|--:|--:|")
            previous = None
            for n in args.scaling:
                b = max(1, round(n * 1.25 / args.records_per_block))
                r = on_ray if (n == args.records and b == blocks) else run(recipes[n], "ray", b)
                # The fixed cost of the stages shrinks per block as blocks grow; the cost of
                # each added block is what must stay flat.
                added = "" if previous is None else f"{(r['seconds'] - previous[1]) / (b - previous[0]):.2f}"
                print(f"| {n:,} | {b} | {r['pieces']} | {r['seconds']:.1f} | {r['seconds'] / b:.2f} | {added} |")
                previous = (b, r["seconds"])


if __name__ == "__main__":
    main()
