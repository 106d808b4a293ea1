"""Texts of a corpus on disk, each with where it came from, for checks over any corpus.

JSON Lines (``.jsonl``/``.json``) and Parquet files, folders of them, and ``data build``
outputs (their packed blocks decoded with the build's tokenizer). Every record that
gives no text is counted by reason in ``counts["skipped"]``, never dropped unseen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ecomharness.data import layout
from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError, iter_jsonl

SUFFIXES = (".jsonl", ".json", ".parquet")


def _skip(counts: dict, reason: str) -> None:
    counts["skipped"][reason] = counts["skipped"].get(reason, 0) + 1


def corpus_texts(paths: list[Path], field: str, counts: dict) -> Iterator[tuple[dict, str]]:
    """``(location, text)`` per record of every path, in order; ``counts["records"]``
    counts the texts given."""
    for path in paths:
        if layout.dataset_dir(path) is not None and layout.stats_file(path) is not None:
            yield from _build_texts(path, counts)
            continue
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"{path}: no JSON Lines or Parquet files here (and not a data build output)")
        for file in files:
            if file.suffix == ".parquet":
                yield from _parquet_texts(file, field, counts)
            elif file.suffix in (".jsonl", ".json"):
                yield from _jsonl_texts(file, field, counts)
            else:
                raise UserError(f"{file}: expected a .jsonl, .json or .parquet file")


def _text(record, field: str, counts: dict) -> str | None:
    value = record.get(field) if isinstance(record, dict) else None
    if not isinstance(value, str):
        _skip(counts, f"no text field {field!r}")
        return None
    counts["records"] += 1
    return value


def _jsonl_texts(file: Path, field: str, counts: dict) -> Iterator[tuple[dict, str]]:
    for number, record in iter_jsonl(file):
        if isinstance(record, RecordError):
            _skip(counts, "unreadable line")
            continue
        text = _text(record, field, counts)
        if text is not None:
            yield {"file": str(file), "line": number}, text


def _parquet_texts(file: Path, field: str, counts: dict) -> Iterator[tuple[dict, str]]:
    import pyarrow.parquet as pq

    row = 0
    try:
        batches = pq.ParquetFile(file).iter_batches(batch_size=10_000, columns=[field])
        for batch in batches:
            for record in batch.to_pylist():
                row += 1
                text = _text(record, field, counts)
                if text is not None:
                    yield {"file": str(file), "row": row}, text
    except (KeyError, ValueError) as exc:
        raise UserError(f"{file}: cannot read column {field!r} ({exc})") from exc


def _build_texts(path: Path, counts: dict) -> Iterator[tuple[dict, str]]:
    """A build's packed blocks, decoded: what training reads (block by block)."""
    import datasets

    from ecomharness.data.records import load_tokenizer

    stats = json.loads(layout.stats_file(path).read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(stats["tokenizer"])
    folder = layout.dataset_dir(path)
    dataset = datasets.load_from_disk(str(folder))
    for row, block in enumerate(dataset, start=1):
        ids = [t for t, m in zip(block["input_ids"], block["attention_mask"]) if m]
        counts["records"] += 1
        yield {"file": str(folder), "row": row}, tokenizer.decode(ids, skip_special_tokens=True)
