"""Shopping MMLU's published layout, and where each task's documents come from.

The benchmark's ``data.zip`` unpacks to a ``data/`` folder; its skill-wise files,
``data/skills/skill<N>_<name>.json``, hold every question of one skill as JSON Lines
with the fields ``input_field`` (the whole prompt), ``output_field`` (the answer: an
option number, a list of numbers, a list of relevance weights, a list of entities or a
text), ``task_name``, ``task_type`` (``multiple-choice``, ``retrieval``, ``ranking``,
``named_entity_recognition``, ``generation``) and ``metric``. These tasks read those
files; the skill is found by its number (``skill1_*.json`` is shopping concept
understanding, ``skill2`` knowledge reasoning, ``skill3`` user behaviour alignment,
``skill4`` multilingual abilities), whatever follows it in the name.

The data is read only from a folder the user gives: ``--metadata
'{"shopping_mmlu_dir": DIR}'`` or ``$ECOMHARNESS_SHOPPING_MMLU_DIR`` (``DIR`` the
unpacked ``data/`` folder or the folder holding it). No licence for the data was found
(the repository's LICENSE, Apache-2.0, covers its code), so none of it ships here:
without a folder the tasks run on a sample written by ecomharness in the same layout,
with a warning that its scores are not benchmark scores.

The archive also holds one file per task, ``data/<type>/<task>_dataset.<csv|json>``
(multiple choice as CSV: ``question``, ``choices``, ``answer``; the other types as JSON
Lines, prompt first and answer last). The tasks ``shopping_mmlu_task`` (generation) and
``shopping_mmlu_task_rc`` (log-likelihood, multiple choice only) read the one named by
``--metadata '{"shopping_mmlu_task": NAME}'``, with the metric the benchmark's task-wise
evaluation gives that type (a generation task's metric from its name), answers read with
the skill-wise definitions (``metrics``; the task-wise scripts read multiple-choice and
retrieval answers otherwise, the plugin's README says how).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.formats.common import ReadResult, RecordError, check_on_error, convert_records, fingerprint_files, iter_jsonl
from ecomharness.tasks.data import DEFAULT_SEED, skipped_summary, task_documents

log = logging.getLogger("ecomharness_shopping_mmlu")

SAMPLE = Path(__file__).resolve().parent / "tasks" / "_sample"
SKILLS = {"concept": 1, "reasoning": 2, "behavior": 3, "multilingual": 4}
TASK_TYPES = ("multiple-choice", "retrieval", "ranking", "named_entity_recognition", "generation")
METRICS = ("accuracy", "hit rate@3", "ndcg", "micro f1", "rougel", "sent-transformer",
           "multilingual-sent-transformer", "bleu", "jp-bleu")
LICENSE = "not stated for the data (the repository's LICENSE, Apache-2.0, covers its code); no data shipped"
SOURCE = "Shopping MMLU (Amazon KDD Cup 2024; github.com/KL4805/ShoppingMMLU)"
OPTION = re.compile(r"^\s*(\d+)\.\s", re.MULTILINE)


def skill_file(root: Path, skill: str) -> Path:
    """The skill file of ``skill`` under a user's folder (``DIR/skills`` or
    ``DIR/data/skills``); ``UserError`` naming what was looked for otherwise."""
    number = SKILLS[skill]
    for folder in (root / "skills", root / "data" / "skills"):
        found = sorted(folder.glob(f"skill{number}_*.json")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UserError(f"{folder}: several files for skill {number} ({', '.join(p.name for p in found)})")
    raise UserError(f"{root}: no skills/skill{number}_*.json (Shopping MMLU's skill file for {skill}); give the "
                    "folder data.zip unpacks to")


def _parsed(value: Any) -> Any:
    """A field that may hold a list written as text (``"[1, 2]"``), parsed; else as is."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return value
    return value


def to_doc(record: dict, path: Path, number: int) -> dict:
    """One document: the prompt, the gold answer (``target_text`` as text, ``gold`` as
    data), the task's name, type and metric; ``RecordError`` naming the field otherwise."""
    for key in ("input_field", "task_name", "task_type", "metric"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise RecordError(path, number, key, "must be non-empty text")
    if "output_field" not in record:
        raise RecordError(path, number, "output_field", "is missing")
    kind, metric = record["task_type"], record["metric"]
    if kind not in TASK_TYPES:
        raise RecordError(path, number, "task_type", f"expected one of {', '.join(TASK_TYPES)}, got {kind!r}")
    if metric not in METRICS:
        raise RecordError(path, number, "metric", f"expected one of {', '.join(METRICS)}, got {metric!r}")
    gold = _parsed(record["output_field"])
    if kind == "multiple-choice":
        if isinstance(gold, bool) or not isinstance(gold, (int, str)) or not str(gold).strip().isdigit():
            raise RecordError(path, number, "output_field", f"expected the option's number, got {gold!r}")
        gold = int(str(gold).strip())
        numbers = OPTION.findall(record["input_field"])
        # Rating questions list no options: the answer is a rating from 1 to 5.
        choices = numbers if numbers else ["1", "2", "3", "4", "5"]
        if str(gold) not in choices:
            raise RecordError(path, number, "output_field", f"option {gold} is not among {choices}")
        extra = {"choices": choices, "gold_index": choices.index(str(gold))}
    elif kind in ("retrieval", "ranking"):
        if not isinstance(gold, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in gold):
            raise RecordError(path, number, "output_field", f"expected a list of numbers, got {str(gold)[:60]!r}")
        extra = {"choices": [], "gold_index": 0}
    elif kind == "named_entity_recognition":
        if not isinstance(gold, list) or not all(isinstance(v, str) for v in gold):
            raise RecordError(path, number, "output_field", f"expected a list of entities, got {str(gold)[:60]!r}")
        extra = {"choices": [], "gold_index": 0}
    else:
        if isinstance(gold, list):
            gold = [str(g) for g in gold]
        elif not isinstance(gold, str):
            raise RecordError(path, number, "output_field", f"expected a text or a list of texts, got {gold!r}")
        extra = {"choices": [], "gold_index": 0}
    if kind == "generation":
        target = gold if isinstance(gold, str) else (gold[0] if gold else "")
    elif kind == "multiple-choice":
        target = str(gold)
    elif kind == "ranking":  # the gold answer is an order: candidates by relevance weight, best first
        target = ", ".join(str(i + 1) for i in sorted(range(len(gold)), key=lambda i: (-gold[i], i)))
    else:
        target = ", ".join(str(g) for g in gold)
    return {"input": record["input_field"], "task_name": record["task_name"], "task_type": kind, "metric": metric,
            "gold_json": json.dumps(gold, ensure_ascii=False), "target_text": target, **extra}


# ---------------------------------------------------------------- task-wise files

# Where each task type's per-task file lives in the unpacked archive, and its suffix.
TASK_FOLDERS = {"multiple_choice": ".csv", "retrieval": ".json", "ranking": ".json",
                "named_entity_recognition": ".json", "generation": ".json"}
FOLDER_TYPES = {"multiple_choice": "multiple-choice", "retrieval": "retrieval", "ranking": "ranking",
                "named_entity_recognition": "named_entity_recognition", "generation": "generation"}
TYPE_METRICS = {"retrieval": "hit rate@3", "ranking": "ndcg", "named_entity_recognition": "micro f1"}


def generation_metric(task: str) -> str:
    """The metric the benchmark's task-wise evaluation picks from a generation task's name."""
    if "extraction" in task:
        return "rougel"
    if "translation" in task:
        return "jp-bleu" if "JP" in task else "bleu"
    return "multilingual-sent-transformer" if "multilingual" in task else "sent-transformer"


def task_file(root: Path, task: str) -> tuple[Path, str]:
    """The per-task file of ``task`` (``<type>/<task>_dataset.<csv|json>`` under ``root``
    or ``root/data``) and its task type; ``UserError`` listing where it was looked for."""
    looked = []
    for base in (root, root / "data"):
        for folder, suffix in TASK_FOLDERS.items():
            path = base / folder / f"{task}_dataset{suffix}"
            looked.append(str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
            if path.is_file():
                return path, FOLDER_TYPES[folder]
    raise UserError(f"{root}: no per-task file for {task!r} (looked for {', '.join(looked[:5])}, ...)")


def choice_records(path: Path, task: str) -> list[tuple[int, dict | RecordError]]:
    """``(line, record)`` of a multiple-choice CSV (``question``, ``choices`` as a list
    literal, ``answer`` the option's index), as skill-file records: the prompt built as the
    benchmark builds it (the options numbered from 0, then ``Answer: ``; rating questions
    list no options and are answered 1 to 5)."""
    import csv

    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"question", "choices", "answer"} - set(reader.fieldnames or [])
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected question, choices, answer")
        for line, row in enumerate(reader, start=2):
            try:
                choices = ast.literal_eval(row["choices"]) if row["choices"].strip() else []
            except (ValueError, SyntaxError):
                out.append((line, RecordError(path, line, "choices", "is not a list of options")))
                continue
            if not isinstance(choices, list):
                out.append((line, RecordError(path, line, "choices", "is not a list of options")))
                continue
            prompt = row["question"]
            if task != "review_rating_prediction":
                prompt += "".join(f"\n{i}. {c}" for i, c in enumerate(choices))
            out.append((line, {"input_field": prompt + "\nAnswer: ", "output_field": row["answer"].strip(),
                               "task_name": task, "task_type": "multiple-choice", "metric": "accuracy"}))
    return out


def json_records(path: Path, task: str, kind: str) -> list[tuple[int, dict | RecordError]]:
    """``(line, record)`` of a per-task JSON Lines file: the prompt is its first field and
    the answer its last, as the benchmark's scripts read them."""
    metric = TYPE_METRICS.get(kind) or generation_metric(task)
    out = []
    for line, record in iter_jsonl(path):
        if isinstance(record, RecordError):
            out.append((line, record))
            continue
        values = list(record.values())
        if len(values) < 2:
            out.append((line, RecordError(path, line, None, "expected a prompt field and an answer field")))
            continue
        out.append((line, {"input_field": values[0], "output_field": values[-1], "task_name": task,
                           "task_type": kind, "metric": metric}))
    return out


def _root(metadata: dict) -> Path | None:
    raw = metadata.get("shopping_mmlu_dir") or os.environ.get("ECOMHARNESS_SHOPPING_MMLU_DIR")
    if not raw:
        return None
    root = Path(str(raw)).expanduser()
    if not root.is_dir():
        origin = "--metadata shopping_mmlu_dir" if metadata.get("shopping_mmlu_dir") else "$ECOMHARNESS_SHOPPING_MMLU_DIR"
        raise UserError(f"{origin}: {root} is not a directory")
    return root


def load(**metadata):
    """``custom_dataset`` of every Shopping MMLU task: its YAML's ``metadata.shopping_mmlu``
    names the skill and whether only its multiple-choice questions are wanted."""
    block = metadata.get("shopping_mmlu") or {}
    skill, choice_only = block.get("skill"), bool(block.get("choice_only"))
    if block.get("task_file"):
        return _load_task_file(metadata, choice_only)
    if skill not in SKILLS:
        raise UserError(f"Shopping MMLU task metadata needs shopping_mmlu.skill (one of {', '.join(SKILLS)}), "
                        f"got {block!r}")
    name = f"shopping_mmlu_{skill}_{'rc' if choice_only else 'gen'}"
    on_error = metadata.get("on_error", "raise")
    check_on_error(on_error)
    root = _root(metadata)
    if root is None:
        log.warning("task %s: evaluating on the sample bundled with ecomharness-shopping-mmlu (records written by "
                    "ecomharness in Shopping MMLU's layout): its scores are NOT benchmark scores (give the "
                    "unpacked data.zip with --metadata shopping_mmlu_dir)", name)
    path = skill_file(root if root is not None else SAMPLE, skill)
    docs, skipped = _documents(name, iter_jsonl(path), path, choice_only, on_error)
    return _task_documents(name, path, root, docs, skipped, metadata, skill=skill)


def _task_documents(name: str, path: Path, root: Path | None, docs: list, skipped: list, metadata: dict, **what):
    """The ending both loaders share: the read documents as ecomharness's task data, with
    their source and this benchmark's provenance (``what``: the skill or the task)."""
    source = str(path.resolve()) if root is not None else f"bundled:ecomharness_shopping_mmlu/_sample/{path.name}"
    test = ReadResult(docs, skipped, source, fingerprint_files([path]))
    return task_documents(name, "explicit" if root is not None else "bundled", test, None,
                          seed=int(metadata.get("data_seed", DEFAULT_SEED)),
                          # A score is over every question: no cap unless asked for.
                          max_docs=int(metadata.get("max_docs", 10**9)), fewshot_pool=False,
                          provenance={"dataset": SOURCE, "license": LICENSE, **what})


def _documents(name: str, records, path: Path, choice_only: bool, on_error: str) -> tuple[list, list]:
    """Documents of ``(line, record)`` pairs (only multiple choice with ``choice_only``),
    and the records skipped as bad under ``on_error: skip``."""

    def convert(record: dict, number: int) -> dict | None:
        doc = to_doc(record, path, number)
        return doc if not choice_only or doc["task_type"] == "multiple-choice" else None

    docs, skipped = convert_records(records, convert, on_error)
    if not docs:
        why = f": {len(skipped)} record(s) were skipped as bad, {skipped_summary(skipped)}" if skipped else ""
        raise UserError(f"task {name}: {path} holds no {'multiple-choice ' if choice_only else ''}questions{why}")
    return docs, skipped


SAMPLE_TASK = "product_type_selection"  # the bundled sample's task-wise file, when none is named


def _load_task_file(metadata: dict, choice_only: bool):
    """The per-task file the user names (``shopping_mmlu_task``), as one task."""
    name = "shopping_mmlu_task" + ("_rc" if choice_only else "")
    on_error = metadata.get("on_error", "raise")
    check_on_error(on_error)
    root = _root(metadata)
    task = metadata.get("shopping_mmlu_task")
    if root is None:
        log.warning("task %s: evaluating on the sample bundled with ecomharness-shopping-mmlu (written by "
                    "ecomharness in Shopping MMLU's layout): its scores are NOT benchmark scores", name)
        task = task or SAMPLE_TASK
    elif not isinstance(task, str) or not task:
        raise UserError(f"task {name}: name the task to read with --metadata '{{\"shopping_mmlu_task\": NAME}}' "
                        "(its file is <type>/NAME_dataset.csv or .json)")
    path, kind = task_file(root if root is not None else SAMPLE, task)
    if choice_only and kind != "multiple-choice":
        raise UserError(f"task {name}: {path} is a {kind} task; ranked choice reads multiple-choice tasks only")
    records = choice_records(path, task) if kind == "multiple-choice" else json_records(path, task, kind)
    docs, skipped = _documents(name, records, path, choice_only, on_error)
    return _task_documents(name, path, root, docs, skipped, metadata, task=task)
