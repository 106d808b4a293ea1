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

FOLDER_KINDS = ("classification", "extraction", "generation")
# The EcomGPT evaluation prompt (its src/eval.py): this preamble, then the folder's
# test_prompt instruction, which ends with "### Response:".
PREAMBLE = ("Below is an instruction that describes the {defi} task. "
            "Write a response that appropriately completes the request.\n")

# Folder names are LANG-Dataset-Kind-subtask; the kind segment decides how EcomGPT
# builds and scores the answer: (our kind, extraction format). NER answers are typed
# lines; Condition_Extract and Extract answers are untyped lists joined by label_sep.
KIND_SEGMENTS = {
    "cls": ("classification", None),
    "ner": ("extraction", "typed_lines"),
    "condition_extract": ("extraction", "spans"),
    "extract": ("extraction", "spans"),
    "generate": ("generation", None),
}
# Answer layouts of extraction targets: "ecomgpt" lists every type of the label set in
# order with "None" for the absent ones (what a model tuned on EcomInstruct writes);
# "compact" lists only the types present (shorter few-shot examples).
ANSWER_LAYOUTS = ("ecomgpt", "compact")
# Where a kind came from when neither name has a kind segment: a keyword guess, which a
# task's own stated kind overrides.
GUESSED = "meta-info task (guessed)"


def instruction_sample(doc: dict) -> tuple[str, str]:
    """``(prompt, response)`` of one document in the EcomGPT instruction layout."""
    return PREAMBLE.format(defi=doc["defi"]) + doc["instruction"] + "\n", doc["target_text"]


def kind_segment(name: str) -> tuple[str, str | None] | None:
    """``(kind, extraction format)`` from the kind segment of an EcomInstruct name.

    ``ZH-MEPAVE-NER-attribute_value_extraction`` -> ``("extraction", "typed_lines")``;
    None when the name does not have the four-part ``LANG-Dataset-Kind-subtask`` form
    or its kind segment is not one EcomGPT defines.
    """
    parts = name.split("-")
    if len(parts) != 4:
        return None
    return KIND_SEGMENTS.get(parts[2].casefold())


def kind_from_task_name(task_name: str) -> str:
    """Guess the kind from an EcomInstruct task name such as ``EN-ABSA-CLS-review_topic``.

    The kind segment decides when there is one; otherwise any known kind word.
    """
    segment = kind_segment(task_name)
    if segment is not None:
        return segment[0]
    parts = {p.upper() for p in task_name.replace("_", "-").split("-")}
    if parts & {"CLS", "CLASSIFICATION", "MATCH", "NLI"}:
        return "classification"
    if parts & {"NER", "NED", "EXTRACT", "RE", "EXTRACTION", "AVE", "JAVE"}:
        return "extraction"
    return "generation"


def folder_kind(folder: Path, meta: dict) -> tuple[str, str | None, str, list[str]]:
    """The kind of a folder: ``(kind, extraction format or None, where from, warnings)``.

    The folder name's kind segment comes first (the release's meta-info names are
    sometimes copied from another task or misspelt), the meta-info task name second,
    then the legacy keyword guess.
    """
    warnings = []
    by_folder = kind_segment(folder.name)
    by_meta = kind_segment(str(meta.get("task", "")))
    if by_folder is not None:
        if by_meta is not None and by_meta != by_folder:
            warnings.append(
                f"{folder}: the folder name's kind {folder.name.split('-')[2]} ({by_folder[0]}, "
                f"{by_folder[1] or 'no'} answer format) disagrees with meta-info task "
                f"{meta.get('task')!r} ({by_meta[0]}, {by_meta[1] or 'no'} answer format); using the folder name"
            )
        return by_folder[0], by_folder[1], "folder name", warnings
    if by_meta is not None:
        return by_meta[0], by_meta[1], "meta-info task", warnings
    return kind_from_task_name(str(meta.get("task", ""))), None, GUESSED, warnings


def ecomgpt_scorer(folder: Path, meta: dict, kind: str, fmt: str | None) -> str:
    """Which of EcomGPT's scorer classes scores this folder (``metrics.ecomgpt``): the
    kind segment of the folder name, lower-cased (its ``src/eval.py`` reads it there),
    else of the meta-info task name; a folder with neither (the bundled samples) gets
    the class of its kind: ``cls``, ``generate``, ``ner`` for typed lines, else
    ``extract``."""
    for name in (folder.name, str(meta.get("task", ""))):
        if kind_segment(name) is not None:
            return name.split("-")[2].casefold()
    if kind == "extraction":
        return "ner" if fmt == "typed_lines" else "extract"
    return {"classification": "cls", "generation": "generate"}[kind]


def ecomgpt_answer(scorer: str, terms: list[tuple[str, str]], sep: str, types: list[str]) -> str:
    """The gold answer of a span record as EcomGPT's ``encode_to_input_output`` writes
    it: NER one ``type: span<sep>span`` line per type of ``types`` (meta-info's label
    list, in order; "None" where the record has no span of it; spans of other types
    left out); condition extraction the terms joined by ", " whatever ``label_sep`` is;
    extraction and generation the terms joined by ``sep``."""
    if scorer == "ner":
        grouped: dict[str, list[str]] = {}
        for kind, term in terms:
            grouped.setdefault(kind, []).append(term)
        return "\n".join(f"{kind}: {sep.join(grouped.get(kind, ['None']))}" for kind in types)
    return (", " if scorer == "condition_extract" else sep).join(term for _, term in terms)


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
    if "task" not in meta:
        raise RecordError(path, None, "task", "is missing")
    if not isinstance(meta["task"], str):
        raise RecordError(path, None, "task", f"must be a string, got {type(meta['task']).__name__}")
    if "label_set" in meta and not isinstance(meta["label_set"], dict):
        raise RecordError(path, None, "label_set", "must be an object {label_key: [labels]}")
    for key, labels in (meta.get("label_set") or {}).items():
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise RecordError(path, None, f"label_set.{key}", "must be a list of strings")
    for key in ("label_key", "label_sep", "defi"):
        if key in meta and not isinstance(meta[key], str):
            raise RecordError(path, None, key, f"must be a string, got {type(meta[key]).__name__}")
    prompt = meta.get("test_prompt")
    if prompt is not None and not (isinstance(prompt, dict) and isinstance(prompt.get("instruction", ""), str)):
        raise RecordError(path, None, "test_prompt", "must be an object with a string 'instruction'")
    return meta


def _meta_labels(meta: dict) -> tuple[str, list[str] | None]:
    """``(label_key, its labels)``: the key names the gold labels of a record too; the
    labels are None when meta-info has no label_set."""
    label_sets = meta.get("label_set") or {}
    key = meta.get("label_key") or next(iter(label_sets), "default")
    if not label_sets:
        return key, None
    labels = label_sets.get(key)
    if labels is None:
        raise UserError(f"meta-info label_set has no list for label_key {key!r} (keys: {sorted(label_sets)})")
    return key, labels


def _label_set(meta_labels: list[str] | None, record: dict, path: Path, line: int) -> list[str] | None:
    if "label_set" in record:
        labels = require(record, "label_set", list, path, line)
    else:
        labels = meta_labels
    if labels is None:
        return None
    if not all(isinstance(l, str) for l in labels):
        raise RecordError(path, line, "label_set", "must be a list of strings")
    return [l for l in labels if l.strip()]  # the release writes [""] where there are none


def _instruction(meta: dict, text: str, labels: list[str], sep: str) -> str:
    template = (meta.get("test_prompt") or {}).get("instruction", "{sentences}")
    return template.replace("{sentences}", text).replace("{label_set}", sep.join(labels))


def _typed_lines(pairs: list[tuple[str, str]], sep: str, all_types: list[str] | None) -> str:
    grouped: dict[str, list[str]] = {kind: [] for kind in all_types or []}
    for kind, term in pairs:
        grouped.setdefault(kind, []).append(term)
    if all_types is None:  # compact: each type once, each term once
        grouped = {k: list(dict.fromkeys(v)) for k, v in grouped.items()}
    return "\n".join(f"{kind}: {sep.join(terms) if terms else 'None'}" for kind, terms in grouped.items())


def read_ecominstruct(
    path, on_error: str = "raise", kind: str | None = None, split: str = "test",
    extraction_format: str | None = None, answer_layout: str = "ecomgpt",
) -> ReadResult:
    """Read one EcomInstruct task folder into documents with our standard fields.

    Every document has ``text``, ``instruction`` (the folder's prompt filled in),
    ``label_set``, ``label_sep``, ``defi``, ``kind``, ``target_text`` (the gold output as
    EcomGPT writes it, in ``answer_layout``), and ``ecomgpt_scorer`` and
    ``ecomgpt_answer`` (EcomGPT's scorer class and gold answer, for the ``*_ecomgpt``
    metrics), plus ``target``/``multi_label`` (classification), ``gold_spans``/
    ``extraction_format`` (extraction) or ``target`` (generation).

    The kind comes from the folder name's kind segment, else the meta-info task name;
    ``kind`` states what the caller expects and must agree. Spans are read by their
    ``term`` (as EcomGPT does); offsets that disagree with it are counted in
    ``meta["offset_mismatches"]``, not rejected. Bad records raise ``RecordError``
    naming file, line and field, or are skipped with ``on_error="skip"``.
    """
    folder = Path(path).expanduser()
    if answer_layout not in ANSWER_LAYOUTS:
        raise UserError(f"answer_layout must be one of {ANSWER_LAYOUTS}, got {answer_layout!r}")
    meta = _meta(folder)
    found_kind, found_format, kind_source, warnings = folder_kind(folder, meta)
    if kind is not None and kind not in FOLDER_KINDS:
        raise UserError(f"kind must be one of {FOLDER_KINDS}, got {kind!r}")
    if kind is not None and kind != found_kind and kind_source != GUESSED:
        raise UserError(
            f"{folder}: this task scores {kind}, but the folder is {found_kind} (from its {kind_source}); "
            "map the task to a folder of its kind"
        )
    kind = kind or found_kind
    fmt = found_format or extraction_format or "typed_lines"
    data = folder / f"{split}.json"
    if not data.is_file():
        raise UserError(f"{folder}: no {split}.json in this EcomInstruct folder")
    sep = meta.get("label_sep", ", ")
    try:
        label_key, meta_labels = _meta_labels(meta)
    except UserError as exc:
        raise RecordError(folder / "meta-info.json", None, "label_key", str(exc)) from None
    counts = {"offset_mismatches": 0, "terms_not_in_text": 0}
    scorer = ecomgpt_scorer(folder, meta, kind, fmt)

    def convert(record: dict, line: int) -> dict:
        text = require(record, "sentences", str, data, line)
        if not text.strip():
            raise RecordError(data, line, "sentences", "is empty")
        labels = _label_set(meta_labels, record, data, line)
        if labels is None and (kind == "classification" or (kind == "extraction" and fmt == "typed_lines")):
            raise RecordError(data, line, "label_set",
                              "is missing here and in meta-info.json, and a " + kind + " task needs one")
        labels = labels or []
        doc = {"text": text, "instruction": _instruction(meta, text, labels, sep), "label_set": labels,
               "defi": str(meta.get("defi", "")), "kind": kind, "label_sep": sep, "ecomgpt_scorer": scorer}
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
            doc.update(target=gold, target_text=sep.join(gold), ecomgpt_answer=sep.join(gold))
            return doc
        spans = require(record, "spans", list, data, line)
        checked = []
        for i, span in enumerate(spans):
            name = f"spans[{i}]"
            if not isinstance(span, dict):
                raise RecordError(data, line, name, "must be an object {start, end, type, term}")
            term = span.get("term")
            if not isinstance(term, str) or not term.strip():
                raise RecordError(data, line, f"{name}.term", "must be a non-empty string")
            span_type = ""
            if kind == "extraction" and fmt == "typed_lines":
                span_type = span.get("type")
                if not isinstance(span_type, str) or not span_type:
                    raise RecordError(data, line, f"{name}.type", "is missing: typed extraction needs a type per span")
                if labels and span_type not in labels:
                    raise RecordError(data, line, f"{name}.type", f"unknown label {span_type!r}, not in label_set")
            if kind == "extraction":
                start, end = span.get("start"), span.get("end")
                if not (isinstance(start, int) and isinstance(end, int) and text[start:end] == term):
                    counts["offset_mismatches"] += 1
                if term not in text:
                    counts["terms_not_in_text"] += 1
            checked.append((span_type, term))
        if kind == "generation":
            if not checked:
                raise RecordError(data, line, "spans", "a generation record needs a span holding its target")
            target = sep.join(term for _, term in checked)
            doc.update(target=target, target_text=target, ecomgpt_answer=target)
            return doc
        if fmt == "typed_lines":
            target_text = _typed_lines(checked, sep, labels if answer_layout == "ecomgpt" else None)
        else:
            terms = [t for _, t in checked]
            target_text = sep.join(terms if answer_layout == "ecomgpt" else dict.fromkeys(terms))
        doc.update(gold_spans=[list(p) for p in checked], extraction_format=fmt, target_text=target_text,
                   ecomgpt_answer=ecomgpt_answer(scorer, checked, sep, meta_labels or labels))
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
        meta={"task": meta["task"], "defi": meta.get("defi", ""), "kind": kind, "kind_source": kind_source,
              "extraction_format": fmt if kind == "extraction" else None, "format": "ecominstruct",
              "warnings": warnings, **(counts if kind == "extraction" else {})},
    )
