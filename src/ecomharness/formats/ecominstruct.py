"""The EcomInstruct evaluation layout (EcomGPT release): one folder per task.

``meta-info.json`` holds the task name, ``defi``, ``test_prompt.instruction`` (with
``{sentences}`` and ``{label_set}`` slots), ``label_set``/``label_key``/``label_sep``.
``test.json`` is JSON Lines: ``sentences`` plus ``labels`` (``{label_key: [gold, ...]}``,
classification) or ``spans`` (``[{start, end, type, term}]``: extraction; a generation
target is the ``term`` of its single span). A record may carry its own ``label_set``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.formats.common import ReadResult, RecordError, collect, fingerprint_files, require

KINDS = ("classification", "extraction", "generation")
# The EcomGPT instruction layout: this preamble, then the folder's instruction, which
# ends with "### Response:".
PREAMBLE = ("Below is an instruction that describes the {defi} task. "
            "Write a response that appropriately completes the request.\n\n")


def instruction_sample(doc: dict) -> tuple[str, str]:
    """``(prompt, response)`` of one document in the EcomGPT instruction layout."""
    return PREAMBLE.format(defi=doc["defi"]) + doc["instruction"] + "\n", doc["target_text"]


def infer_kind(task_name: str) -> str:
    """Guess the kind from an EcomInstruct task name such as ``EN-ABSA-CLS-review_topic``."""
    parts = {p.upper() for p in task_name.replace("_", "-").split("-")}
    if parts & {"CLS", "CLASSIFICATION", "MATCH", "NLI"}:
        return "classification"
    if parts & {"NER", "NED", "EXTRACT", "RE", "EXTRACTION", "AVE", "JAVE"}:
        return "extraction"
    return "generation"


def _meta(folder: Path) -> dict[str, Any]:
    path = folder / "meta-info.json"
    if not path.is_file():
        raise UserError(f"{folder}: not an EcomInstruct task folder (no meta-info.json)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(path, getattr(exc, "lineno", None), None, f"invalid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise RecordError(path, 1, None, "expected a JSON object")
    for key in ("task", "label_set"):
        if key not in meta:
            raise RecordError(path, None, key, "is missing")
    if not isinstance(meta["label_set"], dict):
        raise RecordError(path, None, "label_set", "must be an object {label_key: [labels]}")
    return meta


def _label_set(meta: dict, record: dict, path: Path, line: int) -> list[str]:
    if "label_set" in record:
        labels = require(record, "label_set", list, path, line)
    else:
        key = meta.get("label_key") or next(iter(meta["label_set"]), None)
        labels = meta["label_set"].get(key, [])
    if not all(isinstance(l, str) for l in labels):
        raise RecordError(path, line, "label_set", "must be a list of strings")
    return labels


def _instruction(meta: dict, text: str, labels: list[str]) -> str:
    template = (meta.get("test_prompt") or {}).get("instruction", "{sentences}")
    sep = meta.get("label_sep", ", ")
    return template.replace("{sentences}", text).replace("{label_set}", sep.join(labels))


def _typed_lines(pairs: list[tuple[str, str]], sep: str) -> str:
    grouped: dict[str, list[str]] = {}
    for kind, term in pairs:
        if term not in grouped.setdefault(kind, []):
            grouped[kind].append(term)
    return "\n".join(f"{kind}: {sep.join(terms)}" for kind, terms in grouped.items())


def read_ecominstruct(
    path, on_error: str = "raise", kind: str | None = None, split: str = "test",
    extraction_format: str = "typed_lines",
) -> ReadResult:
    """Read one EcomInstruct task folder into documents with our standard fields.

    Every document has ``text``, ``instruction`` (the folder's prompt filled in),
    ``label_set``, ``defi``, ``kind`` and ``target_text`` (the gold output as the model should write it),
    plus ``target``/``multi_label`` (classification), ``gold_spans``/
    ``extraction_format`` (extraction) or ``target`` (generation). Bad records raise
    ``RecordError`` naming file, line and field, or are skipped with ``on_error="skip"``.
    """
    folder = Path(path).expanduser()
    meta = _meta(folder)
    kind = kind or infer_kind(str(meta["task"]))
    if kind not in KINDS:
        raise UserError(f"kind must be one of {KINDS}, got {kind!r}")
    data = folder / f"{split}.json"
    if not data.is_file():
        raise UserError(f"{folder}: no {split}.json in this EcomInstruct folder")
    sep = meta.get("label_sep", ", ")
    label_key = meta.get("label_key") or next(iter(meta["label_set"]), "default")

    def convert(record: dict, line: int) -> dict:
        text = require(record, "sentences", str, data, line)
        if not text.strip():
            raise RecordError(data, line, "sentences", "is empty")
        labels = _label_set(meta, record, data, line)
        doc = {"text": text, "instruction": _instruction(meta, text, labels), "label_set": labels,
               "defi": str(meta.get("defi", "")), "kind": kind}
        if kind == "classification":
            gold_map = require(record, "labels", dict, data, line)
            if label_key not in gold_map:
                raise RecordError(data, line, "labels", f"has no key {label_key!r} (meta-info label_key)")
            gold = gold_map[label_key]
            if not isinstance(gold, list) or not gold or not all(isinstance(g, str) for g in gold):
                raise RecordError(data, line, f"labels.{label_key}", "must be a non-empty list of strings")
            unknown = [g for g in gold if labels and g not in labels]
            if unknown:
                raise RecordError(data, line, f"labels.{label_key}", f"unknown label {unknown[0]!r}, not in label_set")
            doc.update(target=gold, target_text=sep.join(gold))
            return doc
        spans = require(record, "spans", list, data, line)
        checked = []
        for i, span in enumerate(spans):
            name = f"spans[{i}]"
            if not isinstance(span, dict):
                raise RecordError(data, line, name, "must be an object {start, end, type, term}")
            term = require(span, "term", str, data, line)
            if kind == "extraction":
                start = require(span, "start", int, data, line)
                end = require(span, "end", int, data, line)
                span_type = require(span, "type", str, data, line)
                if not 0 <= start < end <= len(text):
                    raise RecordError(data, line, name, f"[{start}, {end}) lies outside the text (length {len(text)})")
                if text[start:end] != term:
                    raise RecordError(data, line, name, f"term {term!r} differs from the text at [{start}, {end}): {text[start:end]!r}")
                if labels and span_type not in labels:
                    raise RecordError(data, line, f"{name}.type", f"unknown label {span_type!r}, not in label_set")
                checked.append((span_type, term))
            else:
                checked.append(("", term))
        if kind == "generation":
            if len(checked) != 1:
                raise RecordError(data, line, "spans", f"a generation record needs exactly one span, got {len(checked)}")
            doc.update(target=checked[0][1], target_text=checked[0][1])
            return doc
        doc.update(
            gold_spans=[list(p) for p in checked],
            extraction_format=extraction_format,
            target_text=_typed_lines(checked, sep) if extraction_format == "typed_lines"
            else sep.join(dict.fromkeys(t for _, t in checked)),
        )
        return doc

    docs, skipped = collect(data, on_error, convert)
    if kind == "classification":
        multi = any(len(d["target"]) > 1 for d in docs)
        for d in docs:
            d["multi_label"] = multi
    return ReadResult(
        docs=docs,
        skipped=skipped,
        source=str(folder.resolve()),
        fingerprint=fingerprint_files([folder / "meta-info.json", data]),
        meta={"task": meta["task"], "defi": meta.get("defi", ""), "kind": kind, "format": "ecominstruct"},
    )
