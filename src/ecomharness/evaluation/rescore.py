"""Re-score saved predictions with our metrics (the ``ecomharness score`` command).

Reads lm-eval ``samples_*.jsonl`` files (``doc`` + ``filtered_resps``) or JSON Lines of
``{"doc": ..., "prediction": ...}``, scores every prediction with its kind's
``process_*`` function, and aggregates as the task would.

A document of an installed task (the file's ``samples_<task>_<date>.jsonl`` name, or a
record's ``task`` field) is scored as the task scores it: by the task's own
``process_results``, each metric aggregated as its ``metric_list`` says (lm-eval's
default for a metric it does not list), so every metric the task defines is re-scored,
whoever wrote the function (a plugin's, FinBen's ``*_finben``...). Otherwise, and for a
task without a ``process_results`` of its own, the document's kind decides, taken in
this order from ``--kind`` (which also overrides the task's scoring); the task's kind;
the document's own ``kind`` field; and only then a guess from its fields, which is
reported. Documents of different tasks or kinds are scored separately.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError, collect
from ecomharness.metrics import lmeval as m
from ecomharness.metrics.kinds import KINDS, TASK_KINDS, infer_kind
from ecomharness.tasks.index import build_task_manager, leaf_task_configs

__all__ = ["KINDS", "TASK_KINDS", "TaskScoring", "infer_kind", "read_predictions", "score_file", "score_predictions",
           "score_with_task", "task_kinds", "task_of_file", "task_scoring"]


def _scorers() -> dict[str, tuple[Callable, dict[str, Callable]]]:
    return {
        "generation": (m.process_generation, {}),
        "classification": (m.process_classification, {"macro_f1": m.cls_macro_f1, "weighted_f1": m.cls_weighted_f1}),
        # FLARE's FPB and FiQA-SA: our classification metrics plus FinBen's own.
        "finben_classification": (m.process_finben_classification, {"macro_f1": m.cls_macro_f1,
                                                                    "weighted_f1": m.cls_weighted_f1,
                                                                    "f1_finben": m.f1_finben,
                                                                    "f1_pixiu": m.f1_pixiu}),
        "extraction": (m.process_extraction, {"precision": m.ie_precision, "recall": m.ie_recall, "f1": m.ie_f1}),
        "reading": (m.process_reading, {}),
        "headlines": (m.process_headlines, {"score": m.headlines_avg_f1, "avg_f1": m.headlines_avg_f1,
                                            "avg_f1_finben": m.avg_f1_finben, "avg_f1_pixiu": m.avg_f1_pixiu}),
        "ner": (m.process_ner, {"score": m.ie_f1, "entity_precision": m.ie_precision, "entity_recall": m.ie_recall,
                                "entity_f1": m.ie_f1, "entity_f1_finben": m.seqeval_f1,
                                "entity_f1_pixiu": m.seqeval_f1}),
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


@dataclass
class TaskScoring:
    """How an installed task scores a document: its kind where it has one of ours
    (``None`` otherwise), and its own ``process_results`` (``None`` for a task scored by
    lm-eval's built-in metrics) with each listed metric's aggregation."""

    kind: str | None
    process: Callable | None = None
    process_name: str | None = None
    aggregations: dict[str, Callable] = dataclass_field(default_factory=dict)


def _resolve_function(value, where: str) -> tuple[Callable, str]:
    """A ``!function`` of a task's config as lm-eval's index keeps it (the YAML's folder
    joined with ``module.function``), imported as lm-eval imports it: a module file
    beside the YAML first, else an importable module."""
    if callable(value):
        return value, f"{getattr(value, '__module__', '?')}.{getattr(value, '__name__', '?')}"
    path = Path(str(value))
    module_name, _, function_name = path.name.rpartition(".")
    if not module_name:
        raise UserError(f"{where}: {value!r} is not a module.function")
    beside = path.parent / f"{module_name}.py"
    try:
        if beside.is_file():
            spec = importlib.util.spec_from_file_location(module_name, beside)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, function_name), f"{module_name}.{function_name}"
    except (ImportError, AttributeError) as exc:
        raise UserError(f"{where}: {module_name}.{function_name} cannot be imported ({exc})") from exc


def _aggregation_of(entry: dict, where: str) -> Callable:
    """A ``metric_list`` entry's aggregation: named in lm-eval's registry, a
    ``!function``, or lm-eval's default for the metric (else the mean, as lm-eval
    falls back)."""
    from lm_eval.api.metrics import mean  # importing it registers lm-eval's own aggregations and defaults
    from lm_eval.api.registry import get_aggregation, get_metric_aggregation

    name = entry.get("aggregation")
    if name is None:
        try:
            return get_metric_aggregation(entry["metric"]) or mean
        except (KeyError, ValueError):
            return mean
    if callable(name) or "/" in str(name):
        return _resolve_function(name, f"{where}: aggregation of {entry['metric']}")[0]
    try:
        function = get_aggregation(str(name))
    except (KeyError, ValueError):
        function = None
    if function is None:
        raise UserError(f"{where}: aggregation {name!r} of {entry['metric']} is not registered (is the plugin that "
                        "defines it installed?)")
    return function


def task_scoring(task_names) -> dict[str, TaskScoring]:
    """How each installed task scores (``TaskScoring``), from its config: its kind
    (``metadata.ecom.kind``, else its ``process_results`` if one of ours), and its own
    ``process_results`` and ``metric_list`` aggregations. Tasks not found are left
    out."""
    names = [t for t in dict.fromkeys(task_names) if t]
    if not names:
        return {}
    manager = build_task_manager(names)
    found: dict[str, TaskScoring] = {}
    for cfg in leaf_task_configs(manager, names):
        task = cfg.get("task")
        ecom = (cfg.get("metadata") or {}).get("ecom") or {}
        kind = ecom.get("kind")
        raw = cfg.get("process_results")
        where = f"task {task}"
        process, process_name = _resolve_function(raw, f"{where}: process_results") if raw is not None else (None, "")
        # Only our own process_* functions name a kind (a plugin's process_generation is not ours).
        ours = process_name.rsplit(".", 1)[-1] if process_name.startswith(f"{m.__name__}.") else ""
        if kind not in KINDS or _PROCESS_KINDS.get(ours) == "finben_classification":
            kind = _PROCESS_KINDS.get(ours)
        scoring = TaskScoring(kind if kind in TASK_KINDS else None, process, process_name or None)
        if process is not None:
            for entry in cfg.get("metric_list") or []:
                if isinstance(entry, dict) and isinstance(entry.get("metric"), str):
                    scoring.aggregations[entry["metric"]] = _aggregation_of(entry, where)
        found[task] = scoring
    return found


def task_kinds(task_names) -> dict[str, str | None]:
    """The kind each installed task scores, from its config (``metadata.ecom.kind``, else
    its ``process_results``); tasks not found or of run-time kind are left out."""
    return {task: scoring.kind for task, scoring in task_scoring(task_names).items() if scoring.kind}


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


def _kind_of(entry) -> str | None:
    return entry.kind if isinstance(entry, TaskScoring) else entry


def kinds_of(pairs: list[tuple[dict, str]], kind: str | None = None, file_task: str | None = None,
             known: dict | None = None) -> list[tuple[str, str]]:
    """``(kind, where it came from)`` for each pair, in the order the module doc gives
    (``known``: task -> its kind or its ``TaskScoring``)."""
    if kind is not None:
        return [(kind, "--kind")] * len(pairs)
    known = known or {}
    result = []
    for doc, _ in pairs:
        task = doc.get("__task__") or file_task
        if task in known and _kind_of(known[task]):
            result.append((_kind_of(known[task]), f"task {task}"))
        elif isinstance(known.get(task), TaskScoring) and known[task].process is not None:
            result.append(("task", f"task {task}"))
        elif doc.get("kind") in KINDS:
            result.append((doc["kind"], "document kind"))
        else:
            result.append((infer_kind(doc), "guessed from document fields"))
    return result


def score_file(pairs: list[tuple[dict, str]], kind: str | None = None, file_task: str | None = None,
               known: dict | None = None) -> list[dict]:
    """Score a file's pairs, one result per (task, kind) group, each saying where its
    kind came from. ``known`` (``task_scoring``'s): an installed task's documents are
    scored by the task's own scoring unless ``kind`` (``--kind``) says otherwise."""
    if not pairs:
        raise UserError("no predictions to score")
    known = known or {}
    groups: dict[tuple, list[tuple[dict, str]]] = {}
    for pair, (doc_kind, source) in zip(pairs, kinds_of(pairs, kind, file_task, known)):
        task = pair[0].get("__task__") or file_task
        groups.setdefault((task, doc_kind, source), []).append(pair)
    results = []
    for (task, doc_kind, source), members in groups.items():
        scoring = known.get(task) if kind is None else None
        if isinstance(scoring, TaskScoring) and scoring.process is not None:
            scored = score_with_task(members, scoring, doc_kind)
        else:
            scored = score_predictions(members, doc_kind)
        results.append({"task": task, "kind_source": source, **scored})
    return results


def _summary(values: list, aggregation: Callable | None) -> dict:
    """A metric's value over the documents: the task's aggregation, with the standard
    error of the mean where it is a mean (none for corpus-level aggregations)."""
    from lm_eval.api.metrics import mean

    if aggregation is not None and getattr(aggregation, "__wrapped__", aggregation) is not mean:
        return {"value": aggregation(values), "stderr": None}
    n = len(values)
    average = sum(values) / n
    var = sum((v - average) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"value": average, "stderr": math.sqrt(var / n)}


def score_with_task(pairs: list[tuple[dict, str]], scoring: TaskScoring, kind: str = "task") -> dict:
    """Score every pair as the task does: its ``process_results`` on each document,
    then each metric aggregated as the task's ``metric_list`` says (a metric it does
    not list: the mean, as lm-eval does). ``{"kind", "scorer", "n", "metrics"}``."""
    rows: dict[str, list] = {}
    for index, (doc, prediction) in enumerate(pairs):
        doc = {k: v for k, v in doc.items() if k != "__task__"}
        try:
            scored = scoring.process(doc, [prediction])
        except KeyError as exc:
            raise UserError(f"document {index + 1} lacks field {exc.args[0]!r} that {scoring.process_name} "
                            "reads") from None
        for name, value in scored.items():
            rows.setdefault(name, []).append(value)
    metrics = {name: _summary(values, scoring.aggregations.get(name)) for name, values in rows.items()}
    return {"kind": kind, "scorer": scoring.process_name, "n": len(pairs), "metrics": metrics}


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
