"""eCeLLM's own scores (``*_ecellm``), beside this plugin's, for comparison with its tables.

Reproduces the evaluation script of github.com/ninglab/eCeLLM (``evaluate.py`` at
f364c18); nothing here is its code. Where it differs from this plugin's primary
``score``, on purpose there and reproduced here:

- an answer it cannot read is left out of the denominator (yes/no, option and
  recommendation tasks): a model that answers rarely but rightly scores 1.0;
- an option answer is read from its first character alone, case-sensitive, among A-E:
  "Answer: C" is A, "b" and "The answer is B" are unreadable; a recommendation must be
  exactly one letter A-T after stripping;
- attribute values compare as written (case and spaces count), each gold triple is
  hit by every predicted triple equal to it, and precision, recall and F1 carry its
  1e-6 guards; out of domain a prediction also hits when its value and source each
  contain the gold's or are contained in it;
- NDCG's ideal order re-sorts only the candidates the model named, and each named
  piece counts (repeats too); unknown letters are skipped.

Where the script cannot run at all, these return a value and say so: an empty option
answer (the script fails on ``pred[0]``) is unreadable; no readable answer at all
(scikit-learn warns and scores 0) scores 0. Answer generation is not reproduced: the
script's BERTScore and BLEURT need models this offline evaluation does not load.
"""

from __future__ import annotations

import json
import math
from collections import Counter

OPTION_LETTERS = frozenset("ABCDE")
RECOMMENDATION_LETTERS = frozenset(chr(ord("A") + i) for i in range(20))


def yesno_answer(answer: str) -> str | None:
    """eCeLLM's yes/no reading: the lower-cased, stripped answer if it is yes or no."""
    text = answer.lower().strip()
    return text if text in ("yes", "no") else None


def option_answer(answer: str) -> str | None:
    """eCeLLM's option reading: the stripped answer's first character, if one of A-E."""
    text = answer.strip()
    return text[0] if text and text[0] in OPTION_LETTERS else None


def recommendation_answer(answer: str) -> str | None:
    """eCeLLM's sequential-recommendation reading: the stripped answer, if one letter A-T."""
    text = answer.strip()
    return text if text in RECOMMENDATION_LETTERS else None


def _readable(rows) -> list[tuple[str, str]]:
    checked = []
    for row in rows:
        if len(row) != 2:
            raise ValueError(f"an eCeLLM row is [gold, prediction or null], got {row!r}")
        if row[1] is not None:
            checked.append((str(row[0]), str(row[1])))
    return checked


def accuracy(rows) -> float:
    """Accuracy over the readable answers of ``[gold, prediction or None]`` rows."""
    kept = _readable(rows)
    return sum(g == p for g, p in kept) / len(kept) if kept else 0.0


def yes_f1(rows) -> float:
    """scikit-learn's binary F1 of "yes" over the readable answers."""
    kept = _readable(rows)
    tp = sum(g == p == "yes" for g, p in kept)
    named = sum(p == "yes" for _, p in kept) + sum(g == "yes" for g, _ in kept)
    return 2 * tp / named if named else 0.0


def macro_f1(rows) -> float:
    """scikit-learn's macro F1 over the readable answers, over every label that is gold
    or predicted among them."""
    kept = _readable(rows)
    labels = {label for row in kept for label in row}
    if not labels:
        return 0.0
    gold, pred = Counter(g for g, _ in kept), Counter(p for _, p in kept)
    hits = Counter(g for g, p in kept if g == p)
    return sum(2 * hits[label] / (gold[label] + pred[label]) for label in labels) / len(labels)


def ndcg(answer: str, gains: list[float]) -> float:
    """eCeLLM's NDCG of one ranking answer ("B,A,C"): each comma piece's first character
    names a candidate (unknown ones skipped, repeats kept), the ideal order sorts the
    named candidates' gains, and the ratio carries the script's 1e-6 guard."""
    scores = []
    for piece in answer.strip().split(","):
        index = ord(piece[0]) - ord("A") if piece else -1
        if 0 <= index < len(gains):
            scores.append(gains[index])

    def dcg(values: list[float]) -> float:
        return sum((2 ** v - 1) / math.log2(i + 2) for i, v in enumerate(values))

    return dcg(scores) / (dcg(sorted(scores, reverse=True)) + 1e-6)


def _contains_either(a, b) -> bool:
    return str(a) in str(b) or str(b) in str(a)


def _triples(text: str) -> list | None:
    """The answer's JSON list, or None where it is not one (eCeLLM counts it invalid)."""
    try:
        items = json.loads(text)
    except ValueError:
        return None
    return items if isinstance(items, list) else []


def extraction_counts(answer: str, gold_text: str, out_of_domain: bool) -> list[int]:
    """``[hits, predicted, gold, invalid]`` of one attribute-value answer as eCeLLM
    counts them: every (gold, predicted) pair that matches is a hit; a prediction counts
    when it is an object with an attribute."""
    gold = json.loads(gold_text)
    parsed = _triples(answer)
    preds = [p for p in parsed or [] if isinstance(p, dict)]
    hits = 0
    for label in gold:
        for pred in preds:
            if not all(key in pred for key in ("attribute", "value", "source")):
                continue
            same = all(pred[key] == label[key] for key in ("attribute", "value", "source"))
            loose = (out_of_domain and pred["attribute"] == label["attribute"] and pred["value"] is not None
                     and pred["source"] is not None and _contains_either(pred["value"], label["value"])
                     and isinstance(pred["source"], str) and _contains_either(pred["source"], label["source"]))
            hits += same or loose
    return [hits, sum("attribute" in p for p in preds), len(gold), int(parsed is None)]


def extraction_f1(rows) -> float:
    """eCeLLM's attribute-value F1 from summed ``extraction_counts``, with its guards:
    P = hits / (predicted + 1e-6), R = hits / gold, F1 = 2PR / (P + R + 1e-6)."""
    hits = sum(row[0] for row in rows)
    predicted = sum(row[1] for row in rows)
    gold = sum(row[2] for row in rows)
    if not gold:
        return 0.0  # the script divides by zero here
    precision, recall = hits / (predicted + 1e-6), hits / gold
    return 2 * recall * precision / (recall + precision + 1e-6)
