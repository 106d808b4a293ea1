"""Classification from generated text: label matching, accuracy, macro/weighted F1, missing.

A model's answer is mapped onto the task's label set (:func:`match_labels`); answers that
match no label count as *missing* (FinBen reports this rate) and as wrong. Per-document
results are ``ClsItem``s; the corpus metrics aggregate a list of them, so lm-eval can
compute them with ``aggregation``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ecomharness.metrics.text import has_cjk, normalize_label

# Separators between several labels in one answer ("Food, Service", "食品、家居").
_SPLIT = re.compile(r"\s*(?:[,，、;；\n]|\band\b)\s*")


@dataclass(frozen=True)
class ClsItem:
    """One document: gold labels, predicted labels (both normalised), and whether the
    answer matched no label at all."""

    gold: frozenset
    pred: frozenset
    missing: bool


def _occurs(label: str, text: str) -> bool:
    if has_cjk(label):
        return label in text
    return re.search(rf"(?<![\w]){re.escape(label)}(?![\w])", text) is not None


def match_labels(prediction: str, labels: list[str], multi_label: bool = False) -> frozenset:
    """The labels a generated answer names, normalised (see ``normalize_label``).

    In order: the whole answer equals a label; else its parts split on separators
    (``,`` ``，`` ``、`` ``;`` new lines) that equal labels; else the labels occurring
    in the answer as whole words (Chinese: as substrings). A single-label task takes
    the first part that matches, and from free text only an unambiguous single label.
    An empty set means the answer is *missing*.
    """
    table = {normalize_label(l): normalize_label(l) for l in labels}
    answer = normalize_label(prediction)
    if not answer:
        return frozenset()
    if answer in table:
        return frozenset([answer])
    parts = [normalize_label(p) for p in _SPLIT.split(answer)]
    named = [p for p in parts if p in table]
    if named:
        return frozenset(named) if multi_label else frozenset(named[:1])
    found = [l for l in table if _occurs(l, answer)]
    # "Positive or negative?" names two labels: for a single-label task that is no answer.
    if multi_label or len(found) == 1:
        return frozenset(found)
    return frozenset()


def cls_item(prediction: str, gold: str | list[str], labels: list[str], multi_label: bool = False) -> ClsItem:
    """Score one answer against its gold label(s)."""
    gold_labels = [gold] if isinstance(gold, str) else list(gold)
    pred = match_labels(prediction, labels, multi_label=multi_label)
    return ClsItem(frozenset(normalize_label(g) for g in gold_labels), pred, missing=not pred)


def accuracy(items: list[ClsItem]) -> float:
    """Fraction of documents whose predicted label set equals the gold set."""
    return sum(i.pred == i.gold for i in items) / len(items) if items else 0.0


def missing_rate(items: list[ClsItem]) -> float:
    """Fraction of documents whose answer matched no label."""
    return sum(i.missing for i in items) / len(items) if items else 0.0


def _per_label(items: list[ClsItem]) -> tuple[dict[str, float], Counter]:
    tp, fp, fn, support = Counter(), Counter(), Counter(), Counter()
    for item in items:
        for label in item.gold | item.pred:
            if label in item.gold and label in item.pred:
                tp[label] += 1
            elif label in item.pred:
                fp[label] += 1
            else:
                fn[label] += 1
        support.update(item.gold)
    f1 = {}
    for label in set(tp) | set(fp) | set(fn):
        denominator = 2 * tp[label] + fp[label] + fn[label]
        f1[label] = 2 * tp[label] / denominator if denominator else 0.0
    return f1, support


def macro_f1(items: list[ClsItem]) -> float:
    """Unweighted mean F1 over labels that occur as gold or prediction.

    Equals scikit-learn's ``f1_score(average="macro")`` for single-label tasks; a
    missing answer counts as a false negative of its gold label, and "missing" itself
    is not a class.
    """
    f1, _ = _per_label(items)
    return sum(f1.values()) / len(f1) if f1 else 0.0


def weighted_f1(items: list[ClsItem]) -> float:
    """Mean F1 over labels weighted by gold support (scikit-learn ``average="weighted"``)."""
    f1, support = _per_label(items)
    total = sum(support.values())
    return sum(f1[l] * n for l, n in support.items()) / total if total else 0.0
