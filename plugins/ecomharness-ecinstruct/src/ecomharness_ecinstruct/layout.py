"""ECInstruct's published layout: which tasks it has, and how its records are read.

The hub dataset ``NingLab/ECInstruct`` is one file, ``dataset.json``, of records with
the string fields ``task``, ``setting``, ``split``, ``instruction``, ``input``,
``options`` (null when the task has none) and ``output``. The test sets are the records
with ``split == "test"``; in-domain and out-of-domain are told apart by ``setting``
(``IND_Diverse_Instruction``, ``OOD_Diverse_Instruction``; the file also holds the
paper's other instruction settings, which these tasks leave alone). An earlier revision
of the hub split the same records into ``train.json``, ``validation.json``,
``test_IND.json`` and ``test_OOD.json``; both are read.

Task names: the official evaluation script spells three of them differently from
readers of the hub data (``Product_Relation_Predicition``, ``Product_Substitue_
Identification``, ``Query_Product_Ranking`` against ``..._Prediction``,
``..._Substitute_...``, ``Query_Product_Rank``); every spelling is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError, iter_jsonl

HUB_ID = "NingLab/ECInstruct"
LICENSE = "CC-BY-4.0 (the dataset card; each source keeps its own terms)"
SETTINGS = {"ind": "IND_Diverse_Instruction", "ood": "OOD_Diverse_Instruction"}
FIELDS = ("task", "setting", "split", "instruction", "input", "output")


@dataclass(frozen=True)
class TaskInfo:
    """One ECInstruct task: its names in the data, how it is scored, and whether it has
    an out-of-domain test set."""

    short: str
    names: tuple[str, ...]
    scoring: str  # yesno | choice_acc | choice_macro_f1 | hit_at_1 | ndcg | extraction | generation
    ood: bool


TASKS = {t.short: t for t in (
    TaskInfo("ave", ("Attribute_Value_Extraction",), "extraction", True),
    TaskInfo("prp", ("Product_Relation_Prediction", "Product_Relation_Predicition"), "choice_macro_f1", True),
    TaskInfo("pm", ("Product_Matching",), "yesno", False),
    TaskInfo("sa", ("Sentiment_Analysis",), "choice_macro_f1", True),
    TaskInfo("sr", ("Sequential_Recommendation",), "hit_at_1", True),
    TaskInfo("mpc", ("Multiclass_Product_Classification",), "choice_acc", False),
    TaskInfo("psi", ("Product_Substitute_Identification", "Product_Substitue_Identification"), "yesno", False),
    TaskInfo("qpr", ("Query_Product_Ranking", "Query_Product_Rank"), "ndcg", False),
    TaskInfo("ap", ("Answerability_Prediction",), "yesno", True),
    TaskInfo("ag", ("Answer_Generation",), "generation", True),
)}


def data_files(path: Path) -> list[Path]:
    """The files of a local copy: ``path`` itself, or in a directory ``dataset.json``, else
    the older per-split files."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such file or directory (expected ECInstruct's dataset.json or its folder)")
    if (path / "dataset.json").is_file():
        return [path / "dataset.json"]
    older = [path / name for name in ("test_IND.json", "test_OOD.json", "test.json") if (path / name).is_file()]
    if not older:
        raise UserError(f"{path}: no dataset.json (nor test_IND.json / test_OOD.json / test.json) of ECInstruct")
    return older


def iter_records(path: Path) -> Iterator[tuple[int, dict | RecordError]]:
    """``(position, record)`` for every record of one file: a JSON array (position: the
    item's index, from 1) or JSON Lines (the line number). Bad items come as
    ``RecordError``."""
    with path.open("rb") as fh:
        head = fh.read(64).lstrip()
    if not head.startswith(b"["):
        yield from iter_jsonl(path)
        return
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a JSON array of records ({exc})") from exc
    for number, item in enumerate(items, start=1):
        yield number, item if isinstance(item, dict) else RecordError(
            path, number, None, f"expected a JSON object, got {type(item).__name__}")


def check_record(record: dict, path: Path, number: int) -> dict[str, Any]:
    """The record with its fields checked; ``RecordError`` naming the field otherwise.
    Records of the older per-split files may lack ``split`` / ``setting``, which the
    file's name says."""
    record = dict(record)
    if "split" not in record and path.name.startswith("test"):
        record["split"] = "test"
    if "setting" not in record and path.stem in ("test_IND", "test_OOD"):
        record["setting"] = SETTINGS[path.stem[-3:].lower()]
    for key in FIELDS:
        if key not in record:
            raise RecordError(path, number, key, "is missing")
        if not isinstance(record[key], str):
            raise RecordError(path, number, key, f"must be text, got {type(record[key]).__name__}")
    options = record.get("options")
    if options is not None and not isinstance(options, (str, list)):
        raise RecordError(path, number, "options", f"must be text, a list or null, got {type(options).__name__}")
    return record
