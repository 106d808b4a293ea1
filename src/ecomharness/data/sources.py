"""Built-in readers of raw corpora: JSON Lines, Parquet, CSV, an HF dataset on disk, the hub.

Each reader streams ``(location, record)`` pairs so that no corpus is ever held whole
in Python objects; ``location`` names the record in error messages. A record that
cannot be read is yielded as a ``RecordError`` for the caller to raise or count.

A reader can also split its source into pieces for the distributed engine (as
datatrove's readers shard files): it carries ``pieces(path, options, target_bytes)``,
returning ``SourcePiece`` s in reading order, and ``read_piece(piece, options)``,
yielding the pieces' records with the locations the whole read gives. Reading every
piece in order yields exactly what the reader yields. A reader without them is read
whole, by one task (``source_pieces``).
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SourcePiece:
    """One read task's share of a source: a byte range of a JSON Lines file, a run of a
    Parquet file's row groups, one whole file, or (``whole``) the whole source."""

    path: str
    start: int = 0  # first byte (JSON Lines) or first row group (Parquet)
    end: int | None = None  # one past the last byte or row group; None: to the end
    first_row: int = 0  # rows before the piece (Parquet locations count from the file's start)
    size: int = 0  # bytes, for the engine's estimate
    whole: bool = False  # the whole source, read by ``reader(path, options)``


def source_pieces(reader: Callable, path: str, options: dict[str, Any], target_bytes: int | None) -> list[SourcePiece]:
    """The reader's pieces of one source (pieces of about ``target_bytes``; None: one
    per file), or the whole source as one piece when the reader cannot split it."""
    if hasattr(reader, "pieces"):
        return list(reader.pieces(path, options, target_bytes))
    return [SourcePiece(path, whole=True)]


def read_source_piece(reader: Callable, piece: SourcePiece, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The records of one piece of a source, as ``reader`` yields them."""
    if piece.whole:
        return reader(piece.path, options)
    return reader.read_piece(piece, options)


def _reader_of_pieces(pieces: Callable, read_piece: Callable, name: str, doc: str) -> Callable:
    """A reader that reads its pieces (one per file) in order, and carries both."""

    def reader(path: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        for piece in pieces(path, options, None):
            yield from read_piece(piece, options)

    reader.__name__ = reader.__qualname__ = name
    reader.__doc__ = doc
    reader.pieces, reader.read_piece = pieces, read_piece
    return reader


def _file_pieces(fmt: str) -> Callable:
    def pieces(path: str, options: dict[str, Any], target_bytes: int | None) -> list[SourcePiece]:
        """One piece per file: a CSV field may hold a newline, so a file is not cut."""
        return [SourcePiece(str(f), size=f.stat().st_size) for f in expand_paths(path, fmt)]

    return pieces


def _jsonl_pieces(path: str, options: dict[str, Any], target_bytes: int | None) -> list[SourcePiece]:
    """Byte ranges of about ``target_bytes``; a line belongs to the piece it begins in."""
    pieces = []
    for file in expand_paths(path, "jsonl"):
        size = file.stat().st_size
        cuts = max(1, -(-size // target_bytes)) if target_bytes else 1
        bounds = [size * i // cuts for i in range(cuts + 1)]
        pieces += [SourcePiece(str(file), a, b, size=b - a) for a, b in zip(bounds, bounds[1:])]
    return pieces


def _read_jsonl_piece(piece: SourcePiece, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for number, record in iter_jsonl(Path(piece.path), piece.start, piece.end):
        yield f"{piece.path}:{number}", record


read_jsonl = _reader_of_pieces(_jsonl_pieces, _read_jsonl_piece, "read_jsonl",
                              "JSON Lines: one object per line; blank lines are skipped.")


def _parquet_pieces(path: str, options: dict[str, Any], target_bytes: int | None) -> list[SourcePiece]:
    """Runs of whole row groups of about ``target_bytes`` (a file with none is one empty piece)."""
    import pyarrow.parquet as pq

    pieces = []
    for file in expand_paths(path, "parquet"):
        meta = pq.ParquetFile(file).metadata
        if target_bytes is None:
            pieces.append(SourcePiece(str(file), 0, meta.num_row_groups, 0, file.stat().st_size))
            continue
        row, run, run_bytes, first = 0, [], 0, 0
        for group in range(meta.num_row_groups):
            if not run:
                first = row
            run.append(group)
            run_bytes += meta.row_group(group).total_byte_size
            row += meta.row_group(group).num_rows
            if run_bytes >= target_bytes:
                pieces.append(SourcePiece(str(file), run[0], run[-1] + 1, first, run_bytes))
                run, run_bytes = [], 0
        if run or meta.num_row_groups == 0:
            pieces.append(SourcePiece(str(file), run[0] if run else 0, (run[-1] + 1) if run else 0, first, run_bytes))
    return pieces


def _read_parquet_piece(piece: SourcePiece, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    groups = list(range(piece.start, piece.end or 0))
    if not groups:
        return
    row = piece.first_row
    for batch in pq.ParquetFile(piece.path).iter_batches(batch_size=int(options.get("batch_size", 10_000)),
                                                         row_groups=groups):
        for record in batch.to_pylist():
            row += 1
            yield f"{piece.path}:row {row}", record


read_parquet = _reader_of_pieces(_parquet_pieces, _read_parquet_piece, "read_parquet",
                                "Parquet files, read in record batches (``options.batch_size``, default 10,000).")


def _read_csv_piece(piece: SourcePiece, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    file = Path(piece.path)
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


read_csv = _reader_of_pieces(_file_pieces("csv"), _read_csv_piece, "read_csv",
                            "CSV with a header row; every value is text (``options.delimiter``, default ``,``).")


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
