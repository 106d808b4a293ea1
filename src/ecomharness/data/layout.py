"""The layout of a ``data build`` output, in one place.

    OUTPUT/
      dataset/      the packed blocks: datasets.load_from_disk (state.json marks it)
      stats.json    what the build did (records, bad records, tokens, ratios, packing)
      stats.md      the same as a readable report
      recipe.yaml   the recipe the build ran (when it came from a file)
      heldout/      held-out text for the bits-per-byte tasks (with a heldout block)
      filtered/     the first records each filter dropped, per source (with filters)

Training may be pointed at OUTPUT or at OUTPUT/dataset; both resolve here.
"""

from __future__ import annotations

from pathlib import Path

DATASET = "dataset"
STATS = "stats.json"
STATS_MD = "stats.md"
RECIPE = "recipe.yaml"
HELDOUT = "heldout"  # held-out text per folder (data/heldout.py): heldout/FOLDER/test.jsonl
FILTERED = "filtered"  # dropped records per source (data/filters.py): filtered/SOURCE.jsonl
STATE = "state.json"  # written by datasets' save_to_disk layout (pack.write_blocks)


def dataset_dir(path: str | Path) -> Path | None:
    """The packed dataset folder of a build output (or the folder itself), or None."""
    path = Path(path)
    folder = path / DATASET if (path / DATASET).is_dir() else path
    return folder if (folder / STATE).is_file() else None


def stats_file(path: str | Path) -> Path | None:
    """The ``stats.json`` of a build output given as OUTPUT or OUTPUT/dataset, or None."""
    path = Path(path)
    candidates = [path / STATS] + ([path.parent / STATS] if (path / STATE).is_file() else [])
    return next((p for p in candidates if p.is_file()), None)
