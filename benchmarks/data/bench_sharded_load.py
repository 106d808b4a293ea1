"""Training's read of a sharded build: memory-mapped, so a build larger than memory needs
no streaming.

    .venv/bin/python benchmarks/data/bench_sharded_load.py [--tokens 256000000] [--shards 8] [--seq-len 1024]

Writes a packed dataset of random token ids in the build's own layout (``pack.write_shard``
and ``pack.finish_dataset``, as both engines write it), then, in a fresh process, opens it
the way training does (``train.components.cpt_dataset`` -> ``datasets.load_from_disk``)
and reads random blocks, printing the process's resident memory next to the dataset's
size on disk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mib(kind: str = "RssAnon") -> float:
    """This process's resident memory now (Linux), in MiB: ``RssAnon`` is memory of its
    own; ``RssFile`` is file pages mapped in, which the kernel drops under pressure."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(kind + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write(out: Path, tokens: int, shards: int, seq_len: int) -> None:
    """``tokens`` random ids in ``shards`` shard files of the build's layout."""
    import numpy as np

    from ecomharness.data import pack

    rng = np.random.default_rng(0)
    per_shard = tokens // shards
    results = []
    for index in range(shards):
        def stream():
            for begin in range(0, per_shard, 1 << 22):
                yield rng.integers(0, 32000, min(1 << 22, per_shard - begin), dtype=np.int32)

        results.append(pack.write_shard(stream(), seq_len, 0, out / pack.shard_file(index, shards)))
    pack.finish_dataset(out, results, seq_len)


def read(folder: str) -> None:
    """Open the dataset as training does and touch random blocks; print memory figures."""
    import numpy as np

    from ecomharness.data import layout

    before = rss_mib()
    import datasets

    imported = rss_mib()
    start = time.perf_counter()
    dataset = datasets.load_from_disk(str(layout.dataset_dir(folder)))
    opened = time.perf_counter() - start
    after_open = rss_mib()
    rows = np.random.default_rng(1).integers(0, len(dataset), 2000)
    start = time.perf_counter()
    total = sum(int(np.asarray(dataset[int(i)]["attention_mask"]).sum()) for i in rows)
    read_s = time.perf_counter() - start
    print(json.dumps({"rows": len(dataset), "rss_start_mib": before, "rss_after_import_mib": imported,
                      "rss_after_open_mib": after_open, "rss_after_reads_mib": rss_mib(),
                      "file_pages_after_reads_mib": rss_mib("RssFile"), "open_s": opened,
                      "random_reads": len(rows), "reads_s": read_s, "tokens_read": total}))


def main() -> None:
    """Write, then read in a fresh process, and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--read", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        read(args.read)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dataset"
        out.mkdir()
        write(out, args.tokens, args.shards, args.seq_len)
        size = sum(p.stat().st_size for p in out.iterdir()) / 2 ** 20
        done = subprocess.run([sys.executable, __file__, "--read", str(out)], capture_output=True, text=True,
                              check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"dataset: {r['rows']:,} blocks of {args.seq_len} in {args.shards} shards, {size:,.0f} MiB on disk")
        print(f"own (anonymous) memory: {r['rss_after_import_mib']:,.0f} MiB after importing datasets, "
              f"{r['rss_after_open_mib']:,.0f} MiB after load_from_disk ({r['open_s']:.2f} s), "
              f"{r['rss_after_reads_mib']:,.0f} MiB after {r['random_reads']:,} random blocks ({r['reads_s']:.2f} s)")
        print(f"growth of own memory from opening and reading: "
              f"{r['rss_after_reads_mib'] - r['rss_after_import_mib']:,.0f} MiB "
              f"({(r['rss_after_reads_mib'] - r['rss_after_import_mib']) / size:.1%} of the dataset's size); "
              f"file pages mapped in: {r['file_pages_after_reads_mib']:,.0f} MiB (page cache, dropped under pressure)")


if __name__ == "__main__":
    main()
