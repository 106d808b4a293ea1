"""Where each ECInstruct task's documents come from (``custom_dataset`` of every task).

Resolved in this order, the one used recorded in every result (ecomharness's
``data_sources``: origin, file, content fingerprint, documents hash, licence):

1. a local copy named by the user: ``--metadata '{"ecinstruct_path": PATH}'`` or
   ``$ECOMHARNESS_ECINSTRUCT_PATH`` (``dataset.json``, or the folder holding it or the
   older ``test_IND.json`` / ``test_OOD.json``); a path that does not hold the task's
   test records is an error, never a fallback;
2. the hub dataset ``NingLab/ECInstruct`` when the hub answers;
3. the sample bundled with this plugin (records written by ecomharness in the hub's
   layout), with a warning that its scores are not benchmark scores.

Query-product ranking is scored by NDCG over the ESCI labels of its candidates, which
the data itself does not carry: eCeLLM's repository keeps them in
``data_label/label.json`` (one list of E/S/C/I per test record, in file order). Give it
with ``--metadata '{"ecinstruct_qpr_labels": FILE}'`` or
``$ECOMHARNESS_ECINSTRUCT_QPR_LABELS``; without it that task stops with an error.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.formats.common import ReadResult, RecordError, check_on_error, convert_records, fingerprint_files
from ecomharness.tasks.data import DEFAULT_MAX_DOCS, DEFAULT_SEED, hub_reachable, task_documents

from ecomharness_ecinstruct.layout import HUB_ID, LICENSE, SETTINGS, TASKS, check_record, data_files, iter_records

log = logging.getLogger("ecomharness_ecinstruct")

SAMPLE = Path(__file__).resolve().parent / "tasks" / "_sample"
# ESCI relevance as eCeLLM's evaluation weighs it.
ESCI_GAIN = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
YES_NO = ("yes", "no")

# Per process: the test records of each file read (all tasks of a group share them).
_TEST_RECORDS: dict[str, tuple[list[tuple[int, Any]], str]] = {}


def _test_record(record: dict | RecordError, where: Path, number: int) -> dict | RecordError | None:
    """A test record of either setting, checked (a bad one as its ``RecordError``), or
    None for the file's other splits and instruction settings, which are not this
    plugin's to check. Records of the older per-split files may lack both fields."""
    if isinstance(record, RecordError):
        return record
    if record.get("split", "test") != "test" or record.get("setting", SETTINGS["ind"]) not in SETTINGS.values():
        return None
    try:
        record = check_record(record, where, number)
    except RecordError as exc:
        return exc
    return record if record["split"] == "test" and record["setting"] in SETTINGS.values() else None


def _test_records(files: list[Path]) -> tuple[list[tuple[str, int, Any]], str]:
    """``(file, position, record or RecordError)`` of the test records in both settings,
    read once per process, and the files' fingerprint."""
    out = []
    for path in files:
        key = str(path.resolve())
        if key not in _TEST_RECORDS:
            kept = [(number, found) for number, record in iter_records(path)
                    if (found := _test_record(record, path, number)) is not None]
            _TEST_RECORDS[key] = (kept, fingerprint_files([path]))
        out.extend((key, number, record) for number, record in _TEST_RECORDS[key][0])
    return out, ",".join(_TEST_RECORDS[str(p.resolve())][1] for p in files)


_HUB: dict[str, Any] = {}


def _hub_records() -> tuple[list[tuple[str, int, Any]], str] | None:
    if "rows" not in _HUB:
        _HUB["rows"] = None
        if hub_reachable():
            import datasets

            try:
                table = datasets.load_dataset(HUB_ID, split="train")
            except Exception as exc:  # network, auth: say so, then the bundled sample
                log.warning("could not load %s from the hub (%s); using the bundled sample", HUB_ID, exc)
            else:
                where = f"hub:{HUB_ID}"
                rows = [(where, number, found) for number, record in enumerate(table, start=1)
                        if (found := _test_record(record, Path(where), number)) is not None]
                _HUB["rows"] = (rows, getattr(table, "_fingerprint", "")[:16])
    return _HUB["rows"]


def _location(metadata: dict) -> tuple[str, Path | None]:
    raw = metadata.get("ecinstruct_path") or os.environ.get("ECOMHARNESS_ECINSTRUCT_PATH")
    if raw:
        return "explicit", Path(str(raw)).expanduser()
    return "default", None


def _qpr_gains(metadata: dict, origin: str, candidates: list[int]) -> list[list[float]]:
    """The ESCI gains of each test record's candidates (``candidates``: how many each
    record ranks), from eCeLLM's label file, matched by position."""
    count = len(candidates)
    raw = metadata.get("ecinstruct_qpr_labels") or os.environ.get("ECOMHARNESS_ECINSTRUCT_QPR_LABELS")
    if raw:
        path = Path(str(raw)).expanduser()
    elif origin == "bundled":
        path = SAMPLE / "qpr_labels.json"
    else:
        raise UserError("ecinstruct_qpr_ind: NDCG needs the ESCI labels of each test record's candidates, which "
                        "ECInstruct's data does not carry; give eCeLLM's data_label/label.json with --metadata "
                        "'{\"ecinstruct_qpr_labels\": FILE}' (or $ECOMHARNESS_ECINSTRUCT_QPR_LABELS)")
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not the ESCI label file (a JSON list of label lists): {exc}") from exc
    if not isinstance(labels, list) or not all(isinstance(row, list) for row in labels):
        raise UserError(f"{path}: expected a JSON list with one list of E/S/C/I labels per test record")
    if len(labels) != count:
        raise UserError(f"{path}: {len(labels)} label lists for {count} query-product ranking test records; "
                        "they are matched by position, so the counts must agree")
    gains = []
    for number, row in enumerate(labels, start=1):
        unknown = [label for label in row if label not in ESCI_GAIN]
        if unknown:
            raise UserError(f"{path}: list {number}: unknown ESCI label(s) {unknown}; expected E, S, C or I")
        if len(row) != candidates[number - 1]:
            raise UserError(f"{path}: list {number} has {len(row)} label(s), but test record {number} ranks "
                            f"{candidates[number - 1]} candidate(s); lists are matched to records by position, so "
                            "each must label every candidate")
        gains.append([ESCI_GAIN[label] for label in row])  # option A's, B's, ... (a list: Arrow keeps it whole)
    return gains


def options_text(options: Any) -> str:
    """The options as the prompt shows them: one per line."""
    if options is None:
        return ""
    if isinstance(options, list):
        return "\n".join(str(o) for o in options)
    text = options.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return "\n".join(str(o) for o in parsed) if isinstance(parsed, list) else text


def answer_letter(text: str) -> str | None:
    """The option letter an answer starts with (``"B: very positive"`` -> ``"B"``), as
    eCeLLM's evaluation reads it; None when it does not start with a letter A-T."""
    text = text.strip()
    return text[0].upper() if text and "A" <= text[0].upper() <= "T" else None


def extraction_triples(text: str, where: Path, number: int | None) -> list[list[str]]:
    """The gold ``[attribute, value, source]`` triples of an attribute-value output."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise RecordError(where, number, "output", f"is not a JSON list of attribute values ({exc})") from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise RecordError(where, number, "output", "must be a JSON list of {attribute, value, source} objects")
    return [[str(i.get(k, "")).strip().lower() for k in ("attribute", "value", "source")] for i in items]


def to_doc(record: dict, short: str, setting: str, where: Path, number: int) -> dict:
    """One document: the prompt's fields, the gold answer (``target_text``), and what the
    task's scoring needs (``gold``)."""
    scoring = TASKS[short].scoring
    output = record["output"].strip()
    doc = {"task": short, "setting": setting, "instruction": record["instruction"], "input": record["input"],
           "options": options_text(record.get("options")), "target_text": output}
    if scoring == "yesno":
        if output.lower() not in YES_NO:
            raise RecordError(where, number, "output", f"expected yes or no, got {output[:40]!r}")
        doc["gold"] = output.lower()
    elif scoring in ("choice_acc", "choice_macro_f1", "hit_at_1"):
        letter = answer_letter(output)
        if letter is None:
            raise RecordError(where, number, "output", f"expected an option letter, got {output[:40]!r}")
        doc["gold"] = letter
    elif scoring == "ndcg":
        ranking = [part.strip().upper() for part in output.split(",") if part.strip()]
        if not ranking:
            raise RecordError(where, number, "output", "expected a ranking of option letters such as B,A,C")
        doc["gold"] = ",".join(ranking)
    elif scoring == "extraction":
        doc["gold"] = extraction_triples(output, where, number)
    return doc


def load(**metadata):
    """``custom_dataset`` of every ECInstruct task (its YAML's ``metadata.ecinstruct``
    names the task and the setting)."""
    block = metadata.get("ecinstruct") or {}
    short, setting_key = block.get("task"), block.get("setting")
    if short not in TASKS or setting_key not in SETTINGS:
        raise UserError(f"ECInstruct task metadata needs ecinstruct.task (one of {', '.join(TASKS)}) and "
                        f"ecinstruct.setting (ind or ood), got {block!r}")
    info, setting = TASKS[short], SETTINGS[setting_key]
    name = f"ecinstruct_{short}_{setting_key}"
    on_error = metadata.get("on_error", "raise")
    check_on_error(on_error)
    origin, path = _location(metadata)
    if path is not None:
        records, fingerprint = _test_records(data_files(path))
    else:
        found = _hub_records()
        if found is not None:
            origin, (records, fingerprint) = "hub", found
        else:
            origin = "bundled"
            log.warning("task %s: evaluating on the sample bundled with ecomharness-ecinstruct (records written by "
                        "ecomharness in ECInstruct's layout): its scores are NOT benchmark scores (give the data "
                        "with --metadata ecinstruct_path)", name)
            records, fingerprint = _test_records([SAMPLE / "dataset.json"])

    def convert(record: dict, where: str, number: int) -> dict | None:
        if record["task"] not in info.names or record["setting"] != setting:
            return None  # another task's record
        return to_doc(record, short, setting, Path(where), number)

    docs, skipped = convert_records(records, convert, on_error)
    if not docs:
        raise UserError(f"task {name}: no {setting} test records of {' / '.join(info.names)} in "
                        f"{path or origin}")
    if info.scoring == "ndcg":
        candidates = [len(doc["options"].split("\n")) if doc["options"] else len(doc["gold"].split(","))
                      for doc in docs]
        for doc, gains in zip(docs, _qpr_gains(metadata, origin, candidates)):
            doc["gains"] = gains
    source = str(path.resolve()) if path is not None else (f"hub:{HUB_ID}" if origin == "hub" else
                                                             "bundled:ecomharness_ecinstruct/_sample")
    test = ReadResult(docs, skipped, source, fingerprint)
    return task_documents(name, origin, test, None, seed=int(metadata.get("data_seed", DEFAULT_SEED)),
                          max_docs=int(metadata.get("max_docs", DEFAULT_MAX_DOCS)), fewshot_pool=False,
                          provenance={"dataset": HUB_ID, "license": LICENSE, "setting": setting})
