"""Plain JSON Lines with a field mapping onto our standard document fields."""

from __future__ import annotations

from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.formats.common import ReadResult, RecordError, collect, fingerprint_files


def read_jsonl_documents(path, on_error: str = "raise", fields: dict[str, str] | None = None,
               required: list[str] | None = None) -> ReadResult:
    """Read JSON Lines, renaming fields: ``fields={"text": "title", "target": "category"}``.

    Each document keeps the record's other fields as they are. ``required`` lists the
    document fields (after renaming) that every record must have; a missing one is an
    error naming file, line and the source field.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{file}: no such JSON Lines file")
    mapping = dict(fields or {})
    source_of = {ours: theirs for ours, theirs in mapping.items()}

    def convert(record: dict, line: int) -> dict:
        doc = {k: v for k, v in record.items() if k not in mapping.values()}
        for ours, theirs in mapping.items():
            if theirs in record:
                doc[ours] = record[theirs]
        for name in required or []:
            if name not in doc:
                raise RecordError(file, line, source_of.get(name, name), "is missing")
        return doc

    docs, skipped = collect(file, on_error, convert)
    return ReadResult(docs=docs, skipped=skipped, source=str(file.resolve()),
                      fingerprint=fingerprint_files([file]), meta={"format": "jsonl", "fields": mapping})
