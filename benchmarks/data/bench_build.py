"""End-to-end `data build` on synthetic corpora of N domain records (N = 100k and 1M).

    .venv/bin/python benchmarks/data/bench_build.py [--records 100000 1000000] [--num-proc 1]

For each N: writes a synthetic corpus (products in 4 sources linked by product id, 75%
Chinese, plus N/4 general documents), trains a 4k byte-level BPE tokenizer on a slice,
then runs the build in a fresh process and prints records/s, tokens/s, the mixing rate
and that process's peak RSS. Corpus generation is not timed. Targets on the 2-core dev
machine: mixing >= 50k records/s; 1M records under 3 GiB peak RSS; 10x the records in
at most 12x the time.
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

RECORDS_PER_PRODUCT = 4.5  # 3 records + 0..3 reviews, on average


def prepare(root: Path, records: int) -> Path:
    """Write the corpus, tokenizer and recipe; return the recipe path."""
    import yaml

    from ecomharness.testing.corpus import corpus_sources, write_corpus
    from ecomharness.demo.tiny import train_tokenizer

    paths = write_corpus(root / "raw", n_products=int(records / RECORDS_PER_PRODUCT), n_general=records // 4, seed=0)
    sample = []
    for path in paths.values():
        with path.open(encoding="utf-8") as fh:
            sample.extend(line for _, line in zip(range(2000), fh))
    train_tokenizer(sample, vocab_size=4000, out_dir=root / "tok")
    recipe = {"output": str(root / "built"), "tokenizer": str(root / "tok"), "seq_len": 1024, "seed": 0,
              "sources": corpus_sources(paths), "mixer": {"name": "graph", "min_records": 2, "max_records": 8}}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def build_once(recipe_path: str, num_proc: int) -> None:
    """Run one build in this process and print its figures as JSON."""
    import dataclasses

    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe

    recipe = dataclasses.replace(load_recipe(recipe_path), num_proc=num_proc)
    start = time.perf_counter()
    stats = build_dataset(recipe, force=True, log=lambda *_: None)
    seconds = time.perf_counter() - start
    domain = sum(s["records"] for s in stats["sources"] if s["kind"] == "domain")
    print(json.dumps({
        "records": stats["records"], "domain_records": domain, "seconds": seconds,
        "tokens": sum(s["tokens"] for s in stats["sources"]), "packed_tokens": stats["packing"]["tokens"],
        "timings": stats["timings_s"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    """Prepare each size, build it in a fresh process, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        build_once(args.one, args.num_proc)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.records:
            root = Path(tmp) / str(n)
            recipe = prepare(root, n)
            out = subprocess.run([sys.executable, __file__, "--one", str(recipe), "--num-proc", str(args.num_proc)],
                                 check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            t = result["timings"]
            print(f"N={n:>9,}: {result['records']:,} records ({result['domain_records']:,} domain), "
                  f"{result['tokens']:,} tokens in {result['seconds']:.1f}s -> "
                  f"{result['records'] / result['seconds']:,.0f} records/s, {result['tokens'] / result['seconds']:,.0f} tokens/s; "
                  f"mixing {result['domain_records'] / t['mix']:,.0f} records/s; "
                  f"stages read+tokenize {t['read_tokenize']:.1f}s mix {t['mix']:.2f}s ratio {t['ratio']:.2f}s "
                  f"pack {t['pack']:.1f}s; peak RSS {result['peak_rss_mib']:,.0f} MiB", flush=True)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(f"time ratio for {b['records'] / a['records']:.1f}x the records: {b['seconds'] / a['seconds']:.2f}x")


if __name__ == "__main__":
    main()
