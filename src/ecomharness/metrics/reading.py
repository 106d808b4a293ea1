"""Reading comprehension (SQuAD v2, CMRC2018): exact match and token F1.

English answers are compared as SQuAD does (lower case, punctuation and articles
removed, words); Chinese answers by characters (every CJK character one token, other
words whole, punctuation removed). The best score over the gold answers counts. SQuAD
v2 unanswerable questions have no gold answer: an empty prediction scores 1, anything
else 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from ecomharness.metrics.text import has_cjk, tokenize

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | set("，。、；：！？“”‘’（）【】《》「」『』…—·")


def normalize_answer(text: str) -> list[str]:
    """Tokens of an answer after SQuAD normalisation (English) or by character (Chinese)."""
    if has_cjk(text):
        return tokenize(text)
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return _ARTICLES.sub(" ", text).split()


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answers: list[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer.

    ``answers == []`` marks an unanswerable question: only an empty prediction matches.
    """
    pred = normalize_answer(prediction)
    if not answers:
        return float(not pred)
    return max(float(pred == normalize_answer(a)) for a in answers)


def f1(prediction: str, answers: list[str]) -> float:
    """Best token-overlap F1 against the gold answers (unanswerable: as exact match)."""
    pred = normalize_answer(prediction)
    if not answers:
        return float(not pred)
    return max(_f1(pred, normalize_answer(a)) for a in answers)
