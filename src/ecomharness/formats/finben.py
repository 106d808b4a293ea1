"""The FinBen / FLARE field layout: JSON Lines with ``id, query, answer, text``.

Classification tasks (FPB, FiQA-SA, Headlines) add ``choices`` and ``gold`` (the index
of the right choice); Headlines adds ``label_type``. NER has ``label``, one BIO tag per
whitespace-separated word of ``text``, instead of choices and gold.
"""

from __future__ import annotations

from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.formats.common import ReadResult, RecordError, collect, fingerprint_files, require
from ecomharness.metrics.text import normalize_label

_BIO = ("B-", "I-")


def _ner_tokens(text: str) -> list[str]:
    # FinBen NER text may start with a "Text: " prefix as in its prompts; labels align
    # with the words of the sentence itself.
    return text.split()


def finben_doc(record: dict, file, line: int, headlines: bool = False) -> dict:
    """One FinBen record -> our document; ``file``/``line`` name it in errors.

    Classification documents get ``target`` (the gold choice), ``label_set``
    (``choices``) and ``query``; Headlines documents (``headlines=True``) also
    ``label_type``, which they must have; NER documents get ``tokens`` and
    ``bio_labels``. Checks: required fields and types, ``gold`` inside ``choices``,
    ``answer`` agreeing with ``choices[gold]``, one BIO tag per word. ``text`` may be
    absent where FinBen leaves it out (Headlines): the query stands in for it.
    """
    query = require(record, "query", str, file, line)
    doc = {
        "id": str(record.get("id", line)),
        "query": query,
        "text": require(record, "text", str, file, line) if "text" in record or "label" in record else query,
    }
    answer = require(record, "answer", str, file, line)
    if "label" in record:  # NER
        tags = require(record, "label", list, file, line)
        tokens = _ner_tokens(doc["text"])
        if len(tags) != len(tokens):
            raise RecordError(file, line, "label", f"has {len(tags)} BIO tags for {len(tokens)} words of 'text'")
        bad = [t for t in tags if not (t == "O" or (isinstance(t, str) and t.startswith(_BIO) and len(t) > 2))]
        if bad:
            raise RecordError(file, line, "label", f"{bad[0]!r} is not a BIO tag (O, B-X, I-X)")
        doc.update(tokens=tokens, bio_labels=tags, target_text=answer)
        return doc
    choices = require(record, "choices", list, file, line)
    if not choices or not all(isinstance(c, str) for c in choices):
        raise RecordError(file, line, "choices", "must be a non-empty list of strings")
    gold = require(record, "gold", int, file, line)
    if not 0 <= gold < len(choices):
        raise RecordError(file, line, "gold", f"{gold} is not an index into {len(choices)} choices")
    if normalize_label(answer) != normalize_label(choices[gold]):
        raise RecordError(file, line, "answer", f"{answer!r} disagrees with choices[gold] = {choices[gold]!r}")
    doc.update(target=choices[gold], target_text=answer, label_set=choices, gold=gold)
    if headlines or "label_type" in record:
        doc["label_type"] = require(record, "label_type", str, file, line)
        if not doc["label_type"].strip():
            raise RecordError(file, line, "label_type", "is empty")
    return doc


def read_finben(path, on_error: str = "raise") -> ReadResult:
    """Read a FinBen JSON Lines file into documents (see :func:`finben_doc`)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{file}: no such FinBen JSON Lines file")
    docs, skipped = collect(file, on_error, lambda record, line: finben_doc(record, file, line))
    return ReadResult(
        docs=docs, skipped=skipped, source=str(file.resolve()),
        fingerprint=fingerprint_files([file]), meta={"format": "finben"},
    )
