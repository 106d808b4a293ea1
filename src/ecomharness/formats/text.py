"""Plain text for held-out perplexity (bits-per-byte) tasks: JSON Lines with a ``text``
field, or a ``.txt`` file holding one document per non-empty line."""

from __future__ import annotations

from pathlib import Path

from ecomharness.formats.common import ReadResult, RecordError, check_on_error, fingerprint_files


def text_doc(record: dict, path, line: int) -> dict:
    """One record -> a document ``{"text"}``; the text must be a non-empty string."""
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RecordError(path, line, "text", "must be a non-empty string")
    return {"text": text}


def read_text_lines(path: Path, on_error: str = "raise") -> ReadResult:
    """A ``.txt`` file as documents, one per non-empty line; a line that is not UTF-8 is
    a bad record naming its line."""
    check_on_error(on_error)
    docs, skipped = [], []
    with Path(path).open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                error = RecordError(path, number, "text", f"is not UTF-8 ({exc.reason} at byte {exc.start})")
                if on_error == "raise":
                    raise error from exc
                skipped.append(error)
                continue
            if line.strip():
                docs.append({"text": line})
    return ReadResult(docs, skipped, str(Path(path).resolve()), fingerprint_files([Path(path)]))
