"""The kinds of scoring a document can need, and how to tell them from its fields.

Shared by the lm-eval hooks (``process_any``) and re-scoring of saved predictions
(``evaluation.rescore``), so it lives here, below both.
"""

from __future__ import annotations

from ecomharness.errors import UserError

KINDS = ("generation", "classification", "extraction", "reading", "headlines", "ner")
# Kinds a task names (by its process_results) but no document's fields can tell apart:
# re-scoring takes them from the task or from --kind, never from a guess.
TASK_KINDS = KINDS + ("finben_classification",)


def infer_kind(doc: dict) -> str:
    """Which scorer a document's fields call for (see ``ecomharness.metrics.lmeval``).

    A document's own ``kind`` wins. An empty ``label_set`` (the release writes ``[""]``
    for generation folders) does not make a document a classification one.
    """
    if doc.get("kind") in KINDS:
        return doc["kind"]
    if "gold_spans" in doc:
        return "extraction"
    if "bio_labels" in doc:
        return "ner"
    if "answers" in doc:
        return "reading"
    labels = doc.get("label_set")
    if isinstance(labels, list) and any(isinstance(l, str) and l.strip() for l in labels):
        return "headlines" if "label_type" in doc else "classification"
    if "target" in doc:
        return "generation"
    raise UserError(
        "cannot tell how to score this document: it has none of the fields gold_spans, "
        "bio_labels, answers, label_set, target; pass --kind"
    )
