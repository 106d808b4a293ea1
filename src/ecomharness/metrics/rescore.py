"""Re-score saved predictions with our metrics (the ``ecomharness score`` command).

Reads lm-eval ``samples_*.jsonl`` files (``doc`` + ``filtered_resps``) or JSON Lines of
``{"doc": ..., "prediction": ...}``, scores every prediction with one kind's
``process_*`` function, and aggregates as the task would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError, collect

KINDS = ("generation", "classification", "extraction", "reading", "headlines", "ner")


def _scorers() -> dict[str, tuple[Callable, dict[str, Callable]]]:
    from ecomharness.metrics import lmeval as m

    return {
        "generation": (m.process_generation, {}),
        "classification": (m.process_classification, {"macro_f1": m.cls_macro_f1, "weighted_f1": m.cls_weighted_f1}),
        "extraction": (m.process_extraction, {"precision": m.ie_precision, "recall": m.ie_recall, "f1": m.ie_f1}),
        "reading": (m.process_reading, {}),
        "headlines": (m.process_headlines, {"score": m.headlines_avg_f1, "avg_f1": m.headlines_avg_f1}),
        "ner": (m.process_ner, {"entity_precision": m.ie_precision, "entity_recall": m.ie_recall, "entity_f1": m.ie_f1}),
    }


def infer_kind(doc: dict) -> str:
    """Which scorer a document's fields call for (see ``ecomharness.metrics.lmeval``)."""
    if "gold_spans" in doc:
        return "extraction"
    if "bio_labels" in doc:
        return "ner"
    if "answers" in doc:
        return "reading"
    if "label_set" in doc:
        return "headlines" if "label_type" in doc else "classification"
    if "target" in doc:
        return "generation"
    raise UserError(
        "cannot tell how to score this document: it has none of the fields gold_spans, "
        "bio_labels, answers, label_set, target; pass --kind"
    )


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
        return doc, prediction

    return collect(path, on_error, convert)


def score_predictions(pairs: list[tuple[dict, str]], kind: str | None = None) -> dict:
    """Score every pair and aggregate: ``{metric: {"value", "stderr"}, "n": ..., "kind": ...}``.

    Per-document metrics are averaged with the standard error of the mean; corpus
    metrics (F1 over labels or spans) use the task's aggregation and have no stderr.
    """
    if not pairs:
        raise UserError("no predictions to score")
    kind = kind or infer_kind(pairs[0][0])
    scorers = _scorers()
    if kind not in scorers:
        raise UserError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    process, corpus = scorers[kind]
    rows: dict[str, list] = {}
    for index, (doc, prediction) in enumerate(pairs):
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
