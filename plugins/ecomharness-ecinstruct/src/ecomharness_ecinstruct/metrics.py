"""Scoring of ECInstruct's answers, per task kind, on ecomharness's metrics.

Each task reports ``score``, its primary metric as eCeLLM reports it, so that the
groups average one number per task:

- yes/no tasks (product matching, substitute identification, answerability): F1 of
  "yes", through ecomharness's corpus P/R/F1 (``ie_f1``) over the one-item sets
  {"yes"}: its counts are exactly the binary confusion matrix;
- option tasks: accuracy (multi-class product classification), macro F1 (sentiment,
  product relation; ecomharness's ``cls_macro_f1``), hit rate at 1 (sequential
  recommendation): the answer's first letter, as eCeLLM's evaluation reads it;
- query-product ranking: NDCG of the predicted order over the candidates' ESCI gains
  (E 1, S 0.1, C 0.01, I 0), the ideal order from all candidates' labels;
- attribute-value extraction: corpus F1 over (attribute, value, source) triples, the
  answer parsed as JSON; out of domain a predicted triple also counts when the
  attribute is the same and value and source each contain the other (eCeLLM's rule);
- answer generation: ROUGE-L (ecomharness's, via ``rouge_l``). The paper's F_BERT
  needs a BERT model; none is loaded here, and the task says so once per process.

Where eCeLLM's script drops an answer it cannot parse from the denominator, these
count it as wrong and report the share of such answers as ``invalid``: a model that
answers nothing usable cannot score well by answering rarely.

Beside them every task but answer generation reports eCeLLM's own score, ``*_ecellm``
(``ecomharness_ecinstruct.ecellm``: its reading of answers and its denominators), to set
a result beside eCeLLM's tables; ``score`` stays ours.
"""

from __future__ import annotations

import json
import logging
import math
import re

import ecomharness.metrics.lmeval  # noqa: F401 - registers ie_f1, cls_macro_f1, ... with lm-eval
from ecomharness.metrics.rouge import rouge_l
from lm_eval.api.registry import register_aggregation

from ecomharness_ecinstruct import ecellm

log = logging.getLogger("ecomharness_ecinstruct")
_WARNED: set[str] = set()


def _raw_answer(results) -> str:
    value = results[0] if isinstance(results, (list, tuple)) and results else results
    return value if isinstance(value, str) else ""


def _answer(results) -> str:
    return _raw_answer(results).strip()


# "B", "B.", "(B)", "B: very positive": a letter standing alone at the start.
_STANDALONE = re.compile(r"^\(?([A-Ta-t])\)?(?:\s*$|\s*[.:)\],;-])")
# "The answer is B", "Answer: C", "answer is (D).": the letter after an explicit "answer".
_EXPLICIT = re.compile(r"\banswer\s*(?:is\s*:?|:)\s*\(?([A-Ta-t])\)?(?![A-Za-z])", re.IGNORECASE)


def option_letter(text: str) -> str | None:
    """The option a model's answer names: a standalone letter at its start, or the
    letter of an explicit "answer is X" / "Answer: X"; None (invalid, counted) for
    anything else. Reading the first character of any answer, as before, turned "The
    answer is B" into T and "Positive" into P, each counted as a valid class."""
    text = text.strip()
    found = _STANDALONE.match(text) or _EXPLICIT.search(text)
    return found.group(1).upper() if found else None


def _letter(text: str) -> str | None:
    return option_letter(text)


def _set_row(gold: list, pred: list) -> list:
    """A row of ecomharness's corpus P/R/F1: the sorted gold and predicted item lists."""
    return [sorted(gold), sorted(pred)]


def process_yesno(doc, results) -> dict:
    """F1 of "yes" (the score), precision, recall, accuracy, invalid."""
    answer = _answer(results).lower()
    pred = answer if answer in ("yes", "no") else None
    row = _set_row([["yes"]] if doc["gold"] == "yes" else [], [["yes"]] if pred == "yes" else [])
    ecellm_row = [doc["gold"], ecellm.yesno_answer(_raw_answer(results))]
    return {"score": row, "f1": row, "precision": row, "recall": row,
            "acc": float(pred == doc["gold"]), "invalid": float(pred is None),
            "acc_ecellm": ecellm_row, "f1_ecellm": ecellm_row}


def process_choice(doc, results) -> dict:
    """Accuracy (the score of multi-class product classification), macro F1 rows,
    invalid."""
    pred = _letter(_answer(results))
    row = [[doc["gold"]], [pred] if pred else []]
    acc = float(pred == doc["gold"])
    ecellm_row = [doc["gold"], ecellm.option_answer(_raw_answer(results))]
    return {"score": acc, "acc": acc, "macro_f1": row, "invalid": float(pred is None),
            "acc_ecellm": ecellm_row, "macro_f1_ecellm": ecellm_row}


def process_choice_macro_f1(doc, results) -> dict:
    """Macro F1 (the score of sentiment analysis and product relation prediction)."""
    out = process_choice(doc, results)
    return {**out, "score": out["macro_f1"]}


def process_hit_at_1(doc, results) -> dict:
    """Hit rate at 1: the one recommended item is the next one bought."""
    # A letter only: a lone "1" or "?" is unreadable, not a valid miss.
    pred = _letter(_answer(results))
    hit = float(pred == doc["gold"])
    return {"score": hit, "hit_at_1": hit, "invalid": float(pred is None),
            "hit_at_1_ecellm": [doc["gold"], ecellm.recommendation_answer(_raw_answer(results))]}


def ndcg(predicted: list[str], gains: list[float]) -> float:
    """NDCG of a predicted order of option letters (``gains``: option A's, B's, ...):
    unknown letters and repeats are skipped; the ideal order is every candidate's gain,
    sorted."""
    seen, dcg = set(), 0.0
    position = 0
    for letter in predicted:
        index = ord(letter) - ord("A")
        if not 0 <= index < len(gains) or letter in seen:
            continue
        seen.add(letter)
        dcg += (2 ** gains[index] - 1) / math.log2(position + 2)
        position += 1
    ideal = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(sorted(gains, reverse=True)))
    return dcg / ideal if ideal > 0 else 0.0


def process_ndcg(doc, results) -> dict:
    """NDCG of the predicted ranking ("B,A,C"; each piece's first letter)."""
    pieces = [p.strip() for p in _answer(results).split(",") if p.strip()]
    predicted = [p[0].upper() for p in pieces]
    score = ndcg(predicted, doc["gains"])
    return {"score": score, "ndcg": score, "invalid": float(not predicted),
            "ndcg_ecellm": ecellm.ndcg(_raw_answer(results), list(doc["gains"]))}


def _triples(text: str) -> list[list[str]] | None:
    try:
        items = json.loads(text)
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    return [[str(i.get(k, "")).strip().lower() for k in ("attribute", "value", "source")]
            for i in items if isinstance(i, dict)]


def _contains_either(a: str, b: str) -> bool:
    return bool(a) and bool(b) and (a in b or b in a)


def relaxed(pred: list[list[str]], gold: list[list[str]]) -> list[list[str]]:
    """Out of domain: each predicted triple that loosely matches a not yet matched gold
    triple (same attribute; value and source each contained in the other) is replaced
    by that gold triple, so the set intersection counts it as a hit."""
    out, free = [], [tuple(g) for g in gold]
    for triple in pred:
        if tuple(triple) in free:
            free.remove(tuple(triple))
            out.append(triple)
            continue
        match = next((g for g in free if g[0] == triple[0] and _contains_either(g[1], triple[1])
                      and _contains_either(g[2], triple[2])), None)
        if match is not None:
            free.remove(match)
            out.append(list(match))
        else:
            out.append(triple)
    return out


def process_extraction(doc, results) -> dict:
    """Corpus F1 over (attribute, value, source) triples (the score), P, R, invalid."""
    pred = _triples(_answer(results))
    invalid = pred is None
    pred = pred or []
    if doc["setting"].startswith("OOD"):
        pred = relaxed(pred, doc["gold"])
    row = _set_row([list(t) for t in {tuple(g) for g in doc["gold"]}], [list(t) for t in {tuple(p) for p in pred}])
    # eCeLLM compares the gold output as written; a document without it (not read by
    # data.py) falls back to the normalised triples.
    gold_text = doc.get("target_text") or json.dumps(
        [dict(zip(("attribute", "value", "source"), triple)) for triple in doc["gold"]])
    counts = ecellm.extraction_counts(_raw_answer(results), gold_text, doc["setting"].startswith("OOD"))
    return {"score": row, "f1": row, "precision": row, "recall": row, "invalid": float(invalid), "f1_ecellm": counts}


def process_generation(doc, results) -> dict:
    """ROUGE-L of the answer (the score, standing in for the paper's F_BERT)."""
    if "ag" not in _WARNED:
        _WARNED.add("ag")
        log.warning("ecinstruct answer generation: scored by ROUGE-L; the paper's F_BERT (BERTScore) needs a BERT "
                    "model, which this offline evaluation does not load")
    score = rouge_l(_answer(results), doc["target_text"])
    return {"score": score, "rougeL": score}


# ---------------------------------------------------------------- eCeLLM's own aggregations


@register_aggregation("ecellm_accuracy")
def ecellm_accuracy(rows) -> float:
    """eCeLLM's accuracy: unreadable answers left out of the denominator."""
    return ecellm.accuracy(rows)


@register_aggregation("ecellm_yes_f1")
def ecellm_yes_f1(rows) -> float:
    """eCeLLM's F1 of "yes": unreadable answers left out."""
    return ecellm.yes_f1(rows)


@register_aggregation("ecellm_macro_f1")
def ecellm_macro_f1(rows) -> float:
    """eCeLLM's macro F1 over the option letters: unreadable answers left out."""
    return ecellm.macro_f1(rows)


@register_aggregation("ecellm_extraction_f1")
def ecellm_extraction_f1(rows) -> float:
    """eCeLLM's attribute-value F1 from summed per-document counts."""
    return ecellm.extraction_f1(rows)
