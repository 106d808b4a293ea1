"""Our metrics in the shapes lm-eval calls: per-document ``process_results`` functions,
corpus aggregations, and per-sample metrics registered by name.

Importing this module registers (the built-in plugin's ``ecomharness_metric_modules``
hook makes ecomharness import it before any task is built):

- metrics ``rougeL_zh``, ``rouge1_zh``, ``rouge2_zh``: Chinese-aware ROUGE F-measure per
  sample, aggregated by mean (usable in any task's ``metric_list``);
- aggregations ``cls_macro_f1``, ``cls_weighted_f1``, ``ie_precision``, ``ie_recall``,
  ``ie_f1``, ``headlines_avg_f1``, and the reference-compatible ones (FinBen's, PIXIU
  2023's, seqeval's, EcomGPT's ``ecomgpt_micro_f1`` and ``ecomgpt_macro_f1``).

Task YAML refers to the ``process_*`` functions with
``process_results: !function ecomharness.metrics.lmeval.process_classification``. They
read standard document fields, so one function serves every task of a kind:

============== =====================================================================
kind           document fields
============== =====================================================================
generation     ``target``: gold text or list of gold texts
classification ``target``: gold label or list; ``label_set``: labels; ``multi_label``
extraction     ``gold_spans``: ``[[type, span], ...]``; ``extraction_format``
reading        ``answers``: gold answers (empty: unanswerable); ``no_answer_text``
headlines      ``target``, ``label_set``, ``label_type``
ner            ``tokens``: words; ``bio_labels``: BIO tag per word
============== =====================================================================

Every kind also returns ``score``, its primary metric per document (accuracy, ROUGE-L,
the document's span F1, token F1, entity F1; Headlines: the corpus average F1), so that
groups can average tasks of different kinds and lm-eval can give the group a standard
error (it computes none for corpus-level aggregations such as micro F1).

Per-document values are plain lists (JSON-friendly in ``--log_samples`` output);
aggregations turn them back into the dataclasses of the metric modules.
"""

from __future__ import annotations

import logging
import math
import sys

import lm_eval.api.metrics  # noqa: F401 - built-in metrics must register before ours
from lm_eval.api.registry import register_aggregation, register_metric

from ecomharness.metrics import classification, ecomgpt, extraction, finben, pixiu, reading, rouge
from ecomharness.metrics.kinds import infer_kind

log = logging.getLogger("ecomharness.metrics")

# ---------------------------------------------------------------- per-sample metrics


@register_metric(metric="rougeL_zh", higher_is_better=True, aggregation="mean")
def rougeL_zh(references, predictions, **kwargs):
    """ROUGE-L F-measure of one prediction (best over references), Chinese-aware."""
    return rouge.rouge_l(predictions[0], references[0] if len(references) == 1 else references)


@register_metric(metric="rouge1_zh", higher_is_better=True, aggregation="mean")
def rouge1_zh(references, predictions, **kwargs):
    """ROUGE-1 F-measure of one prediction, Chinese-aware."""
    return rouge.rouge_1(predictions[0], references[0] if len(references) == 1 else references)


@register_metric(metric="rouge2_zh", higher_is_better=True, aggregation="mean")
def rouge2_zh(references, predictions, **kwargs):
    """ROUGE-2 F-measure of one prediction, Chinese-aware."""
    return rouge.rouge_2(predictions[0], references[0] if len(references) == 1 else references)


# ---------------------------------------------------------------- helpers


def _answer(results) -> str:
    """The generated text of one document (lm-eval passes a list of responses)."""
    value = results[0] if isinstance(results, (list, tuple)) and results else results
    return value if isinstance(value, str) else ""


def _targets(doc) -> list[str]:
    target = doc["target"]
    return [target] if isinstance(target, str) else list(target)


def _cls_row(item: classification.ClsItem) -> list:
    return [sorted(item.gold), sorted(item.pred)]


def _cls_items(rows) -> list[classification.ClsItem]:
    return [classification.ClsItem(frozenset(g), frozenset(p), not p) for g, p in rows]


def _ie_row(item: extraction.ExtractionItem) -> list:
    return [sorted(map(list, item.gold)), sorted(map(list, item.pred))]


def _ie_items(rows) -> list[extraction.ExtractionItem]:
    return [
        extraction.ExtractionItem(frozenset(map(tuple, g)), frozenset(map(tuple, p)))
        for g, p in rows
    ]


# ---------------------------------------------------------------- process_results


def process_generation(doc, results) -> dict:
    """ROUGE-1/2/L F-measure of the answer against ``doc["target"]``."""
    scores = {name: score.fmeasure for name, score in rouge.rouge(_answer(results), _targets(doc)).items()}
    return {**scores, "score": scores["rougeL"]}


def process_classification(doc, results) -> dict:
    """Accuracy and missing per document; the label pair for corpus F1; ROUGE-L."""
    answer = _answer(results)
    item = classification.cls_item(
        answer, _targets(doc), doc["label_set"], multi_label=bool(doc.get("multi_label"))
    )
    row = _cls_row(item)
    acc = float(item.pred == item.gold)
    return {
        "score": acc,
        "acc": acc,
        "macro_f1": row,
        "weighted_f1": row,
        "missing": float(item.missing),
        "ambiguous": float(item.ambiguous),
        "rougeL": rouge.rouge_l(answer, doc.get("target_text") or ", ".join(_targets(doc))),
    }


def process_extraction(doc, results) -> dict:
    """The (gold, predicted) span sets for corpus P/R/F1, and ROUGE-L of the text."""
    answer = _answer(results)
    gold = extraction.gold_set(doc["gold_spans"], typed=doc["extraction_format"] != "spans")
    item = extraction.extraction_item(answer, gold, doc["extraction_format"])
    row = _ie_row(item)
    result = {"score": extraction.document_f1(item), "precision": row, "recall": row, "f1": row}
    if doc.get("target_text"):
        result["rougeL"] = rouge.rouge_l(answer, doc["target_text"])
    return result


def process_reading(doc, results) -> dict:
    """Exact match, token F1 and ROUGE-L against ``doc["answers"]``."""
    answer = _answer(results)
    no_answer = doc.get("no_answer_text")
    if no_answer and reading.normalize_answer(answer) == reading.normalize_answer(no_answer):
        answer = ""  # the task's way of saying "unanswerable" (SQuAD v2)
    answers = list(doc["answers"])
    f1 = reading.f1(answer, answers)
    return {
        "score": f1,
        "exact_match": reading.exact_match(answer, answers),
        "f1": f1,
        "rougeL": rouge.rouge_l(answer, answers) if answers else float(not answer.strip()),
    }


def process_finben_classification(doc, results) -> dict:
    """Our classification metrics plus FinBen's own (``acc_finben`` and the row for
    ``f1_finben``, its weighted F1) and PIXIU 2023's (``acc_pixiu``, ``f1_pixiu``), each
    from that code's answer parsing."""
    answer = _answer(results)
    choices = list(doc["label_set"])
    pred = finben.finben_choice(answer, choices)
    gold = str(doc["target"]).lower()
    # PIXIU 2023 compares the choice as written with the gold choice as written.
    pixiu_pred = pixiu.pixiu_choice(answer, choices)
    pixiu_gold = str(doc["target"])
    return {**process_classification(doc, results), "acc_finben": float(pred == gold), "f1_finben": [gold, pred],
            "acc_pixiu": float(pixiu_pred == pixiu_gold), "f1_pixiu": [pixiu_gold, pixiu_pred]}


def process_headlines(doc, results) -> dict:
    """Accuracy, missing, the (label type, labels) row for the average F1, and the row
    for FinBen's own average F1 (``avg_f1_finben``)."""
    answer = _answer(results)
    item = classification.cls_item(answer, _targets(doc), doc["label_set"])
    row = [doc["label_type"], *_cls_row(item)]
    gold = str(doc["target"]).strip().lower()
    finben_row = [doc["label_type"], gold, finben.finben_headlines_prediction(answer)]
    return {
        "avg_f1_finben": finben_row,
        "avg_f1_pixiu": [doc["label_type"], gold, pixiu.pixiu_headlines_prediction(answer)],
        "score": row,
        "acc": float(item.pred == item.gold),
        "avg_f1": row,
        "missing": float(item.missing),
        "ambiguous": float(item.ambiguous),
    }


def process_ner(doc, results) -> dict:
    """Entity-level (type, start, end) sets for corpus P/R/F1 (seqeval semantics): ours
    (``score``, ``entity_*``), and FLARE's placement of the answer on the words, as
    FinBen's current code and PIXIU 2023 score it (``entity_f1_finben``,
    ``entity_f1_pixiu``: the same rule in both; seqeval's micro F1)."""
    answer = _answer(results)
    item = extraction.ner_item(answer, list(doc["tokens"]), list(doc["bio_labels"]))
    row = _ie_row(item)
    # FLARE searches the sentence as written; a document without it (not read from the
    # FinBen layout) has its words joined by single spaces, which FLARE's offsets assume.
    text = doc.get("text") or " ".join(doc["tokens"])
    flare_row = _ie_row(pixiu.flare_ner_item(answer, text, list(doc["bio_labels"])))
    return {"score": row, "document_f1": extraction.document_f1(item), "entity_precision": row,
            "entity_recall": row, "entity_f1": row, "entity_f1_finben": flare_row, "entity_f1_pixiu": flare_row}


def _ecomgpt_scores(doc, results) -> dict:
    """EcomGPT's own per-document values (``ecomgpt.document_scores``) from the fields
    the EcomInstruct reader adds; none for a document without them (one saved by a run
    before they existed, re-scored by ``ecomharness score``): guessing EcomGPT's gold
    answer from ``target_text`` would be right only for some layouts."""
    if "ecomgpt_scorer" not in doc or "ecomgpt_answer" not in doc:
        return {}
    return ecomgpt.document_scores(doc["ecomgpt_scorer"], _answer(results), doc["ecomgpt_answer"],
                                   doc.get("label_sep", ", "), doc.get("text", ""))


def process_ecominstruct_classification(doc, results) -> dict:
    """``process_classification`` plus EcomGPT's own scores (``micro_f1_ecomgpt``,
    ``macro_f1_ecomgpt``, ``rougeL_ecomgpt``; ``ecomharness.metrics.ecomgpt``)."""
    return {**process_classification(doc, results), **_ecomgpt_scores(doc, results)}


def process_ecominstruct_extraction(doc, results) -> dict:
    """``process_extraction`` plus EcomGPT's own scores (its NER, condition-extraction
    or extraction scorer, as the document's folder says)."""
    return {**process_extraction(doc, results), **_ecomgpt_scores(doc, results)}


def process_ecominstruct_generation(doc, results) -> dict:
    """``process_generation`` plus EcomGPT's own scores (character-set F1 and the
    ``rouge`` package's ROUGE-L)."""
    return {**process_generation(doc, results), **_ecomgpt_scores(doc, results)}


def process_any(doc, results) -> dict:
    """``score`` and ROUGE-L for a document of any kind, told apart by its fields.

    For tasks whose kind is only known at run time (the generic ``ecominstruct`` task):
    ``score`` is accuracy, ROUGE-L or the document's span F1 (aggregated by mean).
    """
    process = {
        "classification": process_classification,
        "extraction": process_extraction,
        "generation": process_generation,
    }[doc.get("kind") or infer_kind(doc)]
    scored = process(doc, results)
    return {"score": scored["score"], "rougeL": scored.get("rougeL", 0.0)}


# ---------------------------------------------------------------- aggregations


# exp() of anything above this overflows a float.
_MAX_EXPONENT = math.log(sys.float_info.max)


@register_aggregation("weighted_perplexity_or_inf")
def weighted_perplexity_or_inf(items) -> float:
    """lm-eval's ``weighted_perplexity``, exp(-sum(log-likelihood) / sum(words or bytes)),
    but +inf with a warning where that overflows a float (a weak model's word
    perplexity on Chinese text, whose "words" are whole sentences): lm-eval's raises
    OverflowError, which ends the evaluation of every task of the run."""
    exponent = -sum(item[0] for item in items) / sum(item[1] for item in items)
    if exponent > _MAX_EXPONENT:
        log.warning("a weighted perplexity of exp(%.1f) overflows a float: reported as +inf", exponent)
        return math.inf
    return math.exp(exponent)


@register_aggregation("cls_macro_f1")
def cls_macro_f1(rows) -> float:
    """Macro F1 over the task's labels (``classification.macro_f1``)."""
    return classification.macro_f1(_cls_items(rows))


@register_aggregation("cls_weighted_f1")
def cls_weighted_f1(rows) -> float:
    """Support-weighted F1 over the task's labels (``classification.weighted_f1``)."""
    return classification.weighted_f1(_cls_items(rows))


@register_aggregation("ie_precision")
def ie_precision(rows) -> float:
    """Micro precision over all documents' spans."""
    return extraction.micro_precision(_ie_items(rows))


@register_aggregation("ie_recall")
def ie_recall(rows) -> float:
    """Micro recall over all documents' spans."""
    return extraction.micro_recall(_ie_items(rows))


@register_aggregation("ie_f1")
def ie_f1(rows) -> float:
    """Micro F1 over all documents' spans."""
    return extraction.micro_f1(_ie_items(rows))


@register_aggregation("f1_finben")
def f1_finben(rows) -> float:
    """FinBen's weighted F1 over its own answer parsing (``finben.finben_weighted_f1``)."""
    return finben.finben_weighted_f1([tuple(row) for row in rows])


@register_aggregation("avg_f1_finben")
def avg_f1_finben(rows) -> float:
    """FinBen's Headlines average F1 over its own answer parsing."""
    return finben.finben_headlines_avg_f1([tuple(row) for row in rows])


@register_aggregation("f1_pixiu")
def f1_pixiu(rows) -> float:
    """PIXIU 2023's weighted F1, arguments swapped (``pixiu.pixiu_weighted_f1``)."""
    return pixiu.pixiu_weighted_f1([tuple(row) for row in rows])


@register_aggregation("avg_f1_pixiu")
def avg_f1_pixiu(rows) -> float:
    """PIXIU 2023's Headlines average F1 (``pixiu.pixiu_headlines_avg_f1``)."""
    return pixiu.pixiu_headlines_avg_f1([tuple(row) for row in rows])


@register_aggregation("seqeval_f1")
def seqeval_f1(rows) -> float:
    """seqeval's micro F1 over all documents' entities (``pixiu.seqeval_f1``): 0 when
    nothing is right, also when there is nothing to find."""
    return pixiu.seqeval_f1(_ie_items(rows))


@register_aggregation("ecomgpt_micro_f1")
def ecomgpt_micro_f1(rows) -> float:
    """EcomGPT's micro F1 over the task (``ecomgpt.micro_f1``)."""
    return ecomgpt.micro_f1(rows)


@register_aggregation("ecomgpt_macro_f1")
def ecomgpt_macro_f1(rows) -> float:
    """EcomGPT's "macro" F1 (``ecomgpt.macro_f1``): the F1 of averaged precision and
    recall, or seqeval's mean over entity types for NER."""
    return ecomgpt.macro_f1(rows)


@register_aggregation("headlines_avg_f1")
def headlines_avg_f1(rows) -> float:
    """Mean over label types of the weighted F1 within each type (FinBen Headlines)."""
    items = _cls_items([row[1:] for row in rows])
    return finben.headlines_avg_f1([(row[0], item) for row, item in zip(rows, items)])
