"""Re-score saved predictions with our metrics (the ``ecomharness score`` command).

Reads lm-eval ``samples_*.jsonl`` files (``doc`` + ``filtered_resps``) or JSON Lines of
``{"doc": ..., "prediction": ...}``, scores every prediction with its kind's
``process_*`` function, and aggregates as the task would.

The kind of each document comes, in this order, from ``--kind``; the task the file
belongs to (``samples_<task>_<date>.jsonl``, or a record's ``task`` field), looked up
in the installed tasks; the document's own ``kind`` field; and only then a guess from
its fields, which is reported. Documents of different kinds are scored separately.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError, collect
from ecomharness.metrics import lmeval as m
from ecomharness.metrics.kinds import KINDS, TASK_KINDS, infer_kind
from ecomharness.tasks.index import build_task_manager, leaf_task_configs

__all__ = ["KINDS", "TASK_KINDS", "infer_kind", "read_predictions", "score_file", "score_predictions", "task_kinds", "task_of_file"]


def _scorers() -> dict[str, tuple[Callable, dict[str, Callable]]]:
    return {
        "generation": (m.process_generation, {}),
        "classification": (m.process_classification, {"macro_f1": m.cls_macro_f1, "weighted_f1": m.cls_weighted_f1}),
        # FLARE's FPB and FiQA-SA: our classification metrics plus FinBen's own.
        "finben_classification": (m.process_finben_classification, {"macro_f1": m.cls_macro_f1,
                                                                    "weighted_f1": m.cls_weighted_f1,
                                                                    "f1_finben": m.f1_finben}),
        "extraction": (m.process_extraction, {"precision": m.ie_precision, "recall": m.ie_recall, "f1": m.ie_f1}),
        "reading": (m.process_reading, {}),
        "headlines": (m.process_headlines, {"score": m.headlines_avg_f1, "avg_f1": m.headlines_avg_f1,
                                            "avg_f1_finben": m.avg_f1_finben}),
        "ner": (m.process_ner, {"entity_precision": m.ie_precision, "entity_recall": m.ie_recall, "entity_f1": m.ie_f1}),
    }


# process_results function of a task config -> the kind it scores (None: per document).
_PROCESS_KINDS = {
    "process_generation": "generation", "process_classification": "classification",
    "process_extraction": "extraction", "process_reading": "reading",
    "process_headlines": "headlines", "process_ner": "ner", "process_any": None,
    "process_finben_classification": "finben_classification",
}
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_\d{4}-\d{2}-\d{2}T[\d\-.:]+\.jsonl$")


def task_of_file(path: Path) -> str | None:
    """The task of an lm-eval samples file, from its name ``samples_<task>_<date>.jsonl``."""
    match = _SAMPLES_NAME.match(Path(path).name)
    return match.group("task") if match else None


def task_kinds(task_names) -> dict[str, str | None]:
    """The kind each installed task scores, from its config (``metadata.ecom.kind``, else
    its ``process_results``); tasks not found or of run-time kind are left out."""

    names = [t for t in dict.fromkeys(task_names) if t]
    if not names:
        return {}
    manager = build_task_manager(names)
    kinds: dict[str, str | None] = {}
    for cfg in leaf_task_configs(manager, names):
        ecom = (cfg.get("metadata") or {}).get("ecom") or {}
        kind = ecom.get("kind")
        process = str(cfg.get("process_results") or "").rsplit(".", 1)[-1]
        if kind not in KINDS or _PROCESS_KINDS.get(process) == "finben_classification":
            # The task's own process_results decides where it scores more than its kind
            # (FinBen's classification adds acc_finben and f1_finben to ours).
            kind = _PROCESS_KINDS.get(process)
        if kind in TASK_KINDS:
            kinds[cfg.get("task")] = kind
    return kinds


def read_predictions(path: Path, on_error: str = "raise") -> tuple[list[tuple[dict, str]], list]:
    """``(doc, prediction)`` pairs from an lm-eval samples file or a {doc, prediction} file."""
    path = Path(path)

    def convert(record: dict, line: int):
        if not isinstance(record.get("doc"), dict):
            raise RecordError(path, line, "doc", "must be an object (the task document)")
        doc = dict(record["doc"])
        if "prediction" in record:
            prediction = record["prediction"]
        elif "filtered_resps" in record:
            responses = record["filtered_resps"]
            prediction = responses[0] if isinstance(responses, list) and responses else responses
        else:
            raise RecordError(path, line, "prediction", "is missing (nor is lm-eval's filtered_resps there)")
        if isinstance(prediction, list):  # lm-eval nests generations one level deeper
            prediction = prediction[0] if prediction else ""
        if not isinstance(prediction, str):
            raise RecordError(path, line, "prediction", f"must be text, got {type(prediction).__name__}")
        if "target" not in doc and "target" in record:  # lm-eval's doc_to_target value
            doc["target"] = record["target"]
        for field in ("target", "target_text"):
            value = doc.get(field)
            if field in doc and not (isinstance(value, str) or
                                     (isinstance(value, list) and all(isinstance(v, str) for v in value))):
                raise RecordError(path, line, f"doc.{field}", f"must be text or a list of texts, got {value!r:.40}")
        if isinstance(record.get("task"), str):
            doc["__task__"] = record["task"]
        return doc, prediction

    return collect(path, on_error, convert)


def kinds_of(pairs: list[tuple[dict, str]], kind: str | None = None, file_task: str | None = None,
             known: dict[str, str | None] | None = None) -> list[tuple[str, str]]:
    """``(kind, where it came from)`` for each pair, in the order the module doc gives."""
    if kind is not None:
        return [(kind, "--kind")] * len(pairs)
    known = known or {}
    result = []
    for doc, _ in pairs:
        task = doc.get("__task__") or file_task
        if task in known and known[task]:
            result.append((known[task], f"task {task}"))
        elif doc.get("kind") in KINDS:
            result.append((doc["kind"], "document kind"))
        else:
            result.append((infer_kind(doc), "guessed from document fields"))
    return result


def score_file(pairs: list[tuple[dict, str]], kind: str | None = None, file_task: str | None = None,
               known: dict[str, str | None] | None = None) -> list[dict]:
    """Score a file's pairs, one result per (task, kind) group, each saying where its
    kind came from."""
    if not pairs:
        raise UserError("no predictions to score")
    groups: dict[tuple, list[tuple[dict, str]]] = {}
    for pair, (doc_kind, source) in zip(pairs, kinds_of(pairs, kind, file_task, known)):
        task = pair[0].get("__task__") or file_task
        groups.setdefault((task, doc_kind, source), []).append(pair)
    results = []
    for (task, doc_kind, source), members in groups.items():
        scored = score_predictions(members, doc_kind)
        results.append({"task": task, "kind_source": source, **scored})
    return results


def score_predictions(pairs: list[tuple[dict, str]], kind: str | None = None) -> dict:
    """Score every pair as one kind and aggregate: ``{metric: {"value", "stderr"}, "n",
    "kind"}``.

    Per-document metrics are averaged with the standard error of the mean; corpus
    metrics (F1 over labels or spans) use the task's aggregation and have no stderr.
    """
    if not pairs:
        raise UserError("no predictions to score")
    kind = kind or infer_kind(pairs[0][0])
    scorers = _scorers()
    if kind not in scorers:
        raise UserError(f"unknown kind {kind!r}: expected one of {', '.join(TASK_KINDS)}")
    process, corpus = scorers[kind]
    rows: dict[str, list] = {}
    for index, (doc, prediction) in enumerate(pairs):
        doc = {k: v for k, v in doc.items() if k != "__task__"}
        try:
            scored = process(doc, [prediction])
        except KeyError as exc:
            raise UserError(f"document {index + 1} lacks field {exc.args[0]!r} needed to score as {kind}") from None
        for name, value in scored.items():
            rows.setdefault(name, []).append(value)
    metrics: dict[str, dict] = {}
    for name, values in rows.items():
        if name in corpus:
            metrics[name] = {"value": corpus[name](values), "stderr": None}
        else:
            n = len(values)
            mean = sum(values) / n
            var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
            metrics[name] = {"value": mean, "stderr": math.sqrt(var / n)}
    return {"kind": kind, "n": len(pairs), "metrics": metrics}
