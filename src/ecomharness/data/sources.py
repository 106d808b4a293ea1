"""Built-in readers of raw corpora: JSON Lines, Parquet, CSV, an HF dataset on disk, the hub.

Each reader streams ``(location, record)`` pairs so that no corpus is ever held whole
in Python objects; ``location`` names the record in error messages. A record that
cannot be read is yielded as a ``RecordError`` for the caller to raise or count.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError, iter_jsonl

SUFFIXES = {"jsonl": (".jsonl", ".json"), "parquet": (".parquet",), "csv": (".csv",)}


def expand_paths(path: str, fmt: str) -> list[Path]:
    """A file, every matching file of a directory (sorted), or a glob's matches (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES.get(fmt, ()) and f.is_file())
    else:
        files = sorted(Path(f) for f in glob.glob(path, recursive=True) if Path(f).is_file())
    if not files:
        raise UserError(f"{path}: no {fmt} files found (a file, a directory or a glob is expected)")
    return files


def read_jsonl(path: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """JSON Lines: one object per line; blank lines are skipped."""
    for file in expand_paths(path, "jsonl"):
        for number, record in iter_jsonl(file):
            yield f"{file}:{number}", record


def read_parquet(path: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Parquet files, read in record batches (``options.batch_size``, default 10,000)."""
    import pyarrow.parquet as pq

    for file in expand_paths(path, "parquet"):
        row = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=int(options.get("batch_size", 10_000))):
            for record in batch.to_pylist():
                row += 1
                yield f"{file}:row {row}", record


def read_csv(path: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """CSV with a header row; every value is text (``options.delimiter``, default ``,``)."""
    for file in expand_paths(path, "csv"):
        try:
            with file.open(encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh, delimiter=options.get("delimiter", ","))
                for record in reader:
                    where = f"{file}:{reader.line_num}"
                    if None in record:  # more cells than header columns
                        yield where, RecordError(file, reader.line_num, None, "more cells than header columns")
                        continue
                    yield where, record
        except UnicodeDecodeError as exc:
            raise UserError(f"{file}: invalid UTF-8 ({exc.reason}); CSV files must be UTF-8") from exc


def _iter_dataset(dataset, name: str) -> Iterator[tuple[str, Any]]:
    for row, record in enumerate(dataset, start=1):
        yield f"{name}:row {row}", record


def read_hf_disk(path: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """A dataset saved with ``save_to_disk`` (Arrow-backed, memory-mapped)."""
    import datasets

    if not Path(path).is_dir():
        raise UserError(f"{path}: not a directory saved with datasets' save_to_disk")
    dataset = datasets.load_from_disk(path)
    if isinstance(dataset, datasets.DatasetDict):
        split = options.get("split", "train")
        if split not in dataset:
            raise UserError(f"{path}: no split {split!r} (has {', '.join(dataset)})")
        dataset = dataset[split]
    yield from _iter_dataset(dataset, path)


def read_hub(path: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """A hub dataset id, streamed (``options.name``, ``options.split``, default train)."""
    import datasets

    dataset = datasets.load_dataset(path, options.get("name"), split=options.get("split", "train"), streaming=True)
    yield from _iter_dataset(dataset, f"hub:{path}")




def read_ecominstruct_sft(path: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """EcomInstruct task folders as instruction-format training text (Mix-CPT's mixture).

    ``path`` is one task folder or a directory of them; each record becomes
    ``{"text": prompt + response}`` in the EcomGPT instruction layout. ``options.split``
    picks the file (default ``train``, else ``test``).
    """
    from ecomharness.formats.ecominstruct import instruction_sample, read_ecominstruct

    root = Path(path)
    folders = [root] if (root / "meta-info.json").is_file() else sorted(p.parent for p in root.glob("*/meta-info.json"))
    if not folders:
        raise UserError(f"{path}: no EcomInstruct task folder (meta-info.json) here")
    for folder in folders:
        split = options.get("split") or ("train" if (folder / "train.json").is_file() else "test")
        result = read_ecominstruct(folder, split=split, on_error="skip")
        for error in result.skipped:
            yield f"{error.path}:{error.line}", error
        for index, doc in enumerate(result.docs, start=1):
            prompt, response = instruction_sample(doc)
            yield f"{folder}/{split}.json:{index}", {"text": prompt + response, "task": folder.name}
