"""Ranked-choice ("_rc") variants of the classification tasks: the gold label's position
among a document's choices, for lm-eval's ``multiple_choice`` output type.

The variants score the same documents and prompts by the log-likelihood of each label,
so a model too small to generate a label still shows whether it prefers the right one.
Task YAML: ``doc_to_choice: "{{label_set}}"`` and ``doc_to_target: !function
ecomharness.tasks.choice.gold_index``. Python, not Jinja, because a gold label is
matched to its choice the way our classification metric matches answers (width, case
and punctuation folded: ``metrics.text.normalize_label``), which Jinja cannot express.
"""

from __future__ import annotations

from ecomharness.metrics.text import normalize_label


def gold_index(doc: dict) -> int | list[int]:
    """The index of the gold label in ``doc["label_set"]`` (a list of indices for a
    multi-label document). A gold label that is not among the choices is an error
    naming both: the document cannot be scored by ranking its choices."""
    labels = [str(label) for label in doc["label_set"]]
    target = doc["target"]
    targets = [target] if isinstance(target, str) else list(target)
    folded = [normalize_label(label) for label in labels]
    found = [folded.index(normalize_label(t)) for t in targets if normalize_label(t) in folded]
    if not found:
        raise ValueError(f"gold label {targets!r} is not among the choices {labels!r}")
    return found[0] if len(found) == 1 else sorted(set(found))


def chance_accuracy(task, indices=None) -> float:
    """The accuracy of guessing uniformly among each document's choices, averaged over
    the documents scored (``indices``, default all): the floor a ranked-choice score must
    clear before it says anything."""
    docs = task.eval_docs
    chosen = range(len(docs)) if indices is None else indices
    shares = [1.0 / len(task.doc_to_choice(docs[i])) for i in chosen]
    return sum(shares) / len(shares) if shares else float("nan")
