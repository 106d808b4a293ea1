"""What every reader shares: the error type, the result type, JSON Lines iteration."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError

ON_ERROR = ("raise", "skip")


class RecordError(UserError):
    """A bad record: the message names the file, the line and the field."""

    def __init__(self, path: Path, line: int | None, field_name: str | None, reason: str):
        self.path, self.line, self.field, self.reason = Path(path), line, field_name, reason
        where = f"{path}:{line}" if line else str(path)
        what = f" field {field_name!r}" if field_name else ""
        super().__init__(f"{where}:{what} {reason}")


@dataclass
class ReadResult:
    """Documents read from one source, the records skipped (with why), and provenance."""

    docs: list[dict[str, Any]]
    skipped: list[RecordError] = field(default_factory=list)
    source: str = ""
    fingerprint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def skipped_summary(self) -> dict[str, Any]:
        """Counts for results files: how many records were skipped and the first reasons."""
        return {"skipped": len(self.skipped), "examples": [str(e) for e in self.skipped[:5]]}


def check_on_error(on_error: str) -> None:
    """Validate the ``on_error`` option every reader takes."""
    if on_error not in ON_ERROR:
        raise UserError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def fingerprint_files(paths: list[Path]) -> str:
    """A content fingerprint (sha256 of the files' bytes, in order), first 16 hex digits."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def iter_jsonl(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, JSON object)`` per line; a bad line yields a ``RecordError``.

    Blank lines are skipped. Invalid UTF-8, invalid JSON and a value that is not an
    object are reported with the line; the caller raises or counts them. ``start`` and
    ``end`` read a byte range: the lines that *begin* in ``[start, end)``, numbered as in
    the whole file, so ranges that tile a file read each line exactly once.
    """
    with Path(path).open("rb") as fh:
        number, position = 0, 0
        if start > 0:
            number = _newlines_before(fh, start)
            fh.seek(start - 1)
            if fh.read(1) != b"\n":  # ``start`` is inside a line that began earlier
                position = start + len(fh.readline())
                number += 1
            else:
                position = start
        for raw in fh:
            if end is not None and position >= end:
                break
            position += len(raw)
            number += 1
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, RecordError(path, number, None, f"invalid UTF-8 ({exc.reason})")
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, RecordError(path, number, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(record, dict):
                record = RecordError(path, number, None, f"expected a JSON object, got {type(record).__name__}")
            yield number, record


def _newlines_before(fh, offset: int, chunk: int = 1 << 24) -> int:
    """Newlines in the first ``offset`` bytes of ``fh`` (memory-speed: ``bytes.count``)."""
    fh.seek(0)
    count, left = 0, offset
    while left > 0:
        data = fh.read(min(chunk, left))
        if not data:
            break
        count += data.count(b"\n")
        left -= len(data)
    return count


def convert_records(records: Iterable[tuple], convert: Callable[..., dict | None],
                    on_error: str) -> tuple[list[dict], list[RecordError]]:
    """Documents of ``(*where, record)`` tuples, by ``convert(record, *where)``.

    A record that could not be read (a ``RecordError`` in the stream) or that
    ``convert`` rejects (raising ``RecordError``) is raised under ``on_error: raise``
    and counted in the skipped list under ``skip``; ``convert`` returning None leaves a
    record out as not this task's, which is not a bad record. Every reader of a
    benchmark's records, built in or a plugin's, raises or skips through here."""
    check_on_error(on_error)
    docs, skipped = [], []
    for *where, record in records:
        try:
            if isinstance(record, RecordError):
                raise record
            doc = convert(record, *where)
        except RecordError as exc:
            if on_error == "raise":
                raise
            skipped.append(exc)
            continue
        if doc is not None:
            docs.append(doc)
    return docs, skipped


def collect(path: Path, on_error: str, convert) -> tuple[list[dict], list[RecordError]]:
    """Run ``convert(record, line)`` over a JSON Lines file, raising or skipping bad records."""
    return convert_records(iter_jsonl(path), convert, on_error)


def require(record: dict, key: str, kind: type | tuple, path: Path, line: int) -> Any:
    """``record[key]``, checked to be present and of ``kind``."""
    if key not in record:
        raise RecordError(path, line, key, "is missing")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RecordError(path, line, key, f"must be {names}, got {type(value).__name__}")
    return value
