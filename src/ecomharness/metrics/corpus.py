"""Aggregations as functions of summed per-document counts, for resampling.

A paired bootstrap recomputes a task's metric on thousands of resamples of its
documents. Calling the aggregation on each resample (building thousands of item lists)
takes seconds per metric; every aggregation we ship is instead a function of sums over
documents of small per-document count vectors:

- ``mean``: the value and a 1 per document; the metric is sum(value) / sum(1);
- ``ie_precision`` / ``ie_recall`` / ``ie_f1``: true positives, predicted and gold
  spans per document; micro P/R/F1 from their sums;
- ``cls_macro_f1`` / ``cls_weighted_f1`` / ``f1_finben``: per label, whether the
  document is a true positive, false positive, false negative, and gold support;
- ``headlines_avg_f1`` / ``avg_f1_finben``: the same per label type, plus a count of
  the type's documents (the mean runs over the types a resample contains);
- ``f1_pixiu`` / ``avg_f1_pixiu``: the same with gold and prediction swapped, as PIXIU
  2023 passes them (``f1_pixiu`` counts only the labels that are gold in the resample);
- ``seqeval_f1``: the ``ie_f1`` counts, 0 when nothing is right (seqeval's rule);
- ``ecomgpt_micro_f1``: the same counts from EcomGPT's rows (items or entities);
  ``ecomgpt_macro_f1``: each document's precision and recall and a 1 (the F1 of their
  means), or for NER per entity type its hits, predicted and gold entities;
- ``bits_per_byte`` / ``weighted_perplexity``: each document's log-likelihood and its
  byte (or word) count.

So a resample is a weight vector ``w`` (how often each document was drawn) and its
metric is ``formula(w @ counts)``: one matrix product for thousands of resamples.
``CountForm.value(ones)`` equals the aggregation on the full set exactly (tested
against the aggregation functions themselves).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ecomharness.metrics.finben import FINBEN_MISSING
from ecomharness.metrics.pixiu import PIXIU_MISSING
from ecomharness.registry import aggregations


@dataclass(frozen=True)
class CountForm:
    """Per-document counts (``counts``: documents x columns) and the metric as a function
    of their (weighted) sums, vectorised over rows of sums."""

    counts: np.ndarray
    formula: Callable[[np.ndarray], np.ndarray]
    mean: bool = False  # a mean of per-document values (counts: value, 1)

    def value(self, weights: np.ndarray | None = None) -> np.ndarray | float:
        """The metric for each row of ``weights`` (resamples x documents), or for the
        full set when ``weights`` is None."""
        if weights is None:
            return float(self.formula(self.counts.sum(axis=0, keepdims=True))[0])
        return self.formula(weights @ self.counts)


def _mean(values) -> CountForm:
    x = np.asarray(values, dtype=np.float64)
    return CountForm(np.column_stack([x, np.ones_like(x)]), lambda s: s[:, 0] / np.maximum(s[:, 1], 1e-300), mean=True)


def _ie_counts(rows) -> np.ndarray:
    out = np.zeros((len(rows), 3))
    for i, (gold, pred) in enumerate(rows):
        g, p = {tuple(x) for x in gold}, {tuple(x) for x in pred}
        out[i] = (len(g & p), len(p), len(g))
    return out


def _ie_precision(s: np.ndarray) -> np.ndarray:
    tp, n_pred, n_gold = s[:, 0], s[:, 1], s[:, 2]
    return np.where(n_pred > 0, tp / np.maximum(n_pred, 1e-300), (n_gold == 0).astype(float))


def _ie_recall(s: np.ndarray) -> np.ndarray:
    tp, n_pred, n_gold = s[:, 0], s[:, 1], s[:, 2]
    return np.where(n_gold > 0, tp / np.maximum(n_gold, 1e-300), (n_pred == 0).astype(float))


def _ie_f1(s: np.ndarray) -> np.ndarray:
    p, r = _ie_precision(s), _ie_recall(s)
    return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)


def _seqeval_f1(s: np.ndarray) -> np.ndarray:
    # seqeval: 0 without a true positive, even with nothing to find and nothing predicted.
    tp, n_pred, n_gold = s[:, 0], s[:, 1], s[:, 2]
    p, r = tp / np.maximum(n_pred, 1e-300), tp / np.maximum(n_gold, 1e-300)
    return np.where(tp > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)


def _ecomgpt_scorer(values) -> str | None:
    """"set" or "seqeval": the one kind of EcomGPT row in ``values`` (None if mixed or none)."""
    kinds = {v[0] for v in values}
    return kinds.pop() if len(kinds) == 1 and kinds <= {"set", "seqeval"} else None


def _ecomgpt_micro_form(values) -> CountForm | None:
    # Overlaps, predicted and gold items (entities) per document: seqeval's rule, 0
    # without an overlap, is also EcomGPT's set scorer's.
    if _ecomgpt_scorer(values) is None:
        return None
    counts = [v[1:4] if v[0] == "set" else [sum(c[i] for c in v[1]) for i in (1, 2, 3)] for v in values]
    return CountForm(np.asarray(counts, dtype=np.float64).reshape(-1, 3), _seqeval_f1)


def _set_macro(s: np.ndarray) -> np.ndarray:
    # Columns: the document's precision, its recall, 1; the F1 of their means.
    p, r = s[:, 0] / np.maximum(s[:, 2], 1e-300), s[:, 1] / np.maximum(s[:, 2], 1e-300)
    return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)


def _seqeval_macro(n_types: int):
    """Columns per entity type: hits, predicted, gold; the mean over the types a
    resample contains of each type's F1 (0 with no type: seqeval's is NaN)."""
    def formula(s: np.ndarray) -> np.ndarray:
        tp, pred, gold = s[:, :n_types], s[:, n_types:2 * n_types], s[:, 2 * n_types:]
        f1 = np.where(tp > 0, 2 * tp / np.maximum(pred + gold, 1e-300), 0.0)
        present = (pred + gold) > 0
        count = present.sum(axis=1)
        return np.where(count > 0, (f1 * present).sum(axis=1) / np.maximum(count, 1), 0.0)
    return formula


def _ecomgpt_macro_form(values) -> CountForm | None:
    scorer = _ecomgpt_scorer(values)
    if scorer == "set":
        return CountForm(np.asarray([[v[4], v[5], 1.0] for v in values]).reshape(-1, 3), _set_macro)
    if scorer != "seqeval":
        return None
    types = sorted({c[0] for v in values for c in v[1]})
    index = {kind: j for j, kind in enumerate(types)}
    counts = np.zeros((len(values), 3 * len(types)))
    for i, v in enumerate(values):
        for kind, tp, pred, gold in v[1]:
            counts[i, [index[kind], len(types) + index[kind], 2 * len(types) + index[kind]]] = tp, pred, gold
    return CountForm(counts, _seqeval_macro(len(types)))


def _labels(rows) -> list[str]:
    return sorted({label for gold, pred in rows for label in (*gold, *pred)})


def _bits_per_byte(s: np.ndarray) -> np.ndarray:
    return -s[:, 0] / np.maximum(s[:, 1], 1e-300) / math.log(2)


def _weighted_perplexity(s: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # +inf where exp overflows, as weighted_perplexity_or_inf reports it
        return np.exp(-s[:, 0] / np.maximum(s[:, 1], 1e-300))


def _cls_counts(rows, labels: list[str]) -> np.ndarray:
    """Columns per label (in ``labels`` order): tp, fp, fn, then gold support."""
    index = {label: i for i, label in enumerate(labels)}
    n_labels = len(labels)
    out = np.zeros((len(rows), 4 * n_labels))
    for i, (gold, pred) in enumerate(rows):
        gold, pred = set(gold), set(pred)
        for label in gold | pred:
            j = index[label]
            if label in gold and label in pred:
                out[i, j] = 1
            elif label in pred:
                out[i, n_labels + j] = 1
            else:
                out[i, 2 * n_labels + j] = 1
        for label in gold:
            out[i, 3 * n_labels + index[label]] += 1
    return out


def _per_label_f1(s: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp, fp, fn = s[:, :n_labels], s[:, n_labels:2 * n_labels], s[:, 2 * n_labels:3 * n_labels]
    denominator = 2 * tp + fp + fn
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-300), 0.0)
    return f1, denominator > 0, s[:, 3 * n_labels:4 * n_labels]


def _macro(s: np.ndarray, n_labels: int) -> np.ndarray:
    f1, present, _ = _per_label_f1(s, n_labels)
    count = present.sum(axis=1)
    return np.where(count > 0, (f1 * present).sum(axis=1) / np.maximum(count, 1), 0.0)


def _weighted(s: np.ndarray, n_labels: int) -> np.ndarray:
    f1, _, support = _per_label_f1(s, n_labels)
    total = support.sum(axis=1)
    return np.where(total > 0, (f1 * support).sum(axis=1) / np.maximum(total, 1e-300), 0.0)


def _swapped_weighted(s: np.ndarray, n_labels: int) -> np.ndarray:
    """PIXIU 2023's weighted F1 on rows given swapped (the prediction as "gold"): only
    the labels that are really gold in the resample (its swapped tp + fp) count."""
    f1, _, support = _per_label_f1(s, n_labels)
    gold_here = (s[:, :n_labels] + s[:, n_labels:2 * n_labels]) > 0
    total = (support * gold_here).sum(axis=1)
    return np.where(total > 0, (f1 * support * gold_here).sum(axis=1) / np.maximum(total, 1e-300), 0.0)


def _typed_counts(rows, labels: list[str], types: list[str]) -> np.ndarray:
    """One block per label type: the label columns of the type's documents (zero for the
    others), then a column counting the type's documents."""
    width = 4 * len(labels) + 1
    out = np.zeros((len(rows), width * len(types)))
    plain = _cls_counts([(gold, pred) for _, gold, pred in rows], labels)
    for k, label_type in enumerate(types):
        mine = np.array([row[0] == label_type for row in rows])
        out[mine, k * width:k * width + width - 1] = plain[mine]
        out[mine, k * width + width - 1] = 1
    return out


def _typed_weighted(n_labels: int, n_types: int):
    """Mean over the label types present of each type's weighted F1 (FinBen Headlines)."""
    width = 4 * n_labels + 1

    def formula(s: np.ndarray) -> np.ndarray:
        total = np.zeros(len(s))
        present = np.zeros(len(s))
        for k in range(n_types):
            block = s[:, k * width:(k + 1) * width]
            here = block[:, -1] > 0
            total += np.where(here, _weighted(block[:, :-1], n_labels), 0.0)
            present += here
        return np.where(present > 0, total / np.maximum(present, 1), 0.0)

    return formula


def _finben_row(gold: str, pred: str) -> tuple[list[str], list[str]]:
    # FinBen's "missing" is no class: an answer naming nothing (metrics/finben.py).
    return [gold], ([] if pred == FINBEN_MISSING else [pred])


def _pixiu_row(gold: str, pred: str) -> tuple[list[str], list[str]]:
    # PIXIU 2023 passes the prediction as the truth; its "missing" is no label either.
    return ([] if pred == PIXIU_MISSING else [pred]), [gold]


def _as_cls_rows(aggregation: str, values: list):
    """``(rows, types)``: label-set rows ``(gold, pred)`` (typed rows ``(type, gold,
    pred)`` when ``types`` is not None) for an aggregation over labels, else None."""
    if aggregation in ("cls_macro_f1", "cls_weighted_f1"):
        return [(list(g), list(p)) for g, p in values], None
    if aggregation == "f1_finben":
        return [_finben_row(g, p) for g, p in values], None
    if aggregation == "headlines_avg_f1":
        rows = [(str(v[0]), list(v[1]), list(v[2])) for v in values]
        return rows, sorted({r[0] for r in rows})
    if aggregation == "avg_f1_finben":
        rows = [(str(v[0]), *_finben_row(v[1], v[2])) for v in values]
        return rows, sorted({r[0] for r in rows})
    if aggregation == "f1_pixiu":
        return [_pixiu_row(g, p) for g, p in values], None
    if aggregation == "avg_f1_pixiu":
        rows = [(str(v[0]), *_pixiu_row(v[1], v[2])) for v in values]
        return rows, sorted({r[0] for r in rows})
    return None


def _label_form(aggregation: str, rows, types, labels: list[str]) -> CountForm:
    if types is not None:
        return CountForm(_typed_counts(rows, labels, types), _typed_weighted(len(labels), len(types)))
    n = len(labels)
    formula = {"cls_macro_f1": lambda s: _macro(s, n),
               "f1_pixiu": lambda s: _swapped_weighted(s, n)}.get(aggregation, lambda s: _weighted(s, n))
    return CountForm(_cls_counts(rows, labels), formula)


def _row_labels(rows, types) -> list[str]:
    return _labels([(g, p) for *_, g, p in rows] if types is not None else rows)


def _mean_form(values: list) -> CountForm | None:
    if not all(isinstance(v, (int, float)) for v in values):
        return None
    return _mean([float(v) for v in values])


def _ie_form(formula):
    return lambda values: CountForm(_ie_counts(values), formula)


def _rolling_form(formula):
    # lm-eval's loglikelihood_rolling values: (log-likelihood, words or bytes).
    return lambda values: CountForm(np.asarray([[float(v[0]), float(v[1])] for v in values]).reshape(-1, 2), formula)


def _label_form_of(aggregation: str):
    def form(values: list) -> CountForm | None:
        found = _as_cls_rows(aggregation, values)
        if found is None:
            return None
        rows, types = found
        return _label_form(aggregation, rows, types, _row_labels(rows, types))
    return form


def _label_paired(aggregation: str):
    """Count forms of two sides over one label set (a label seen on one side only is a
    column of zeros on the other, and each resample's F1 counts only the labels that
    resample contains, as the aggregation itself does)."""
    def paired(candidate: list, baseline: list) -> tuple[CountForm, CountForm] | None:
        c_found, b_found = _as_cls_rows(aggregation, candidate), _as_cls_rows(aggregation, baseline)
        if c_found is None or b_found is None:
            return None
        (c_rows, c_types), (b_rows, b_types) = c_found, b_found
        labels = sorted(set(_row_labels(c_rows, c_types)) | set(_row_labels(b_rows, b_types)))
        types = None if c_types is None else sorted(set(c_types) | set(b_types))
        return _label_form(aggregation, c_rows, types, labels), _label_form(aggregation, b_rows, types, labels)
    return paired


@dataclass(frozen=True)
class Aggregation:
    """Everything the harness knows about one lm-eval aggregation, in one record: how
    a task's per-document values become the metric as a function of summed counts
    (``count_form``; what paired tests and bootstrap errors resample), how two sides'
    values become comparable forms (``paired``; default: each side's own count form),
    the function lm-eval aggregates with (``lm_eval``, ``"module:attr"``; None for
    lm-eval's own, such as ``mean``) and its direction.

    Registered by name through the ``ecomharness_aggregations`` hook, built-ins like any
    plugin's (``builtin/metrics.py``); ``count_form`` looks records up by the
    aggregation name lm-eval recorded for a metric."""

    name: str
    count_form: Callable[[list], "CountForm | None"]
    paired: Callable[[list, list], "tuple[CountForm, CountForm] | None"] | None = None
    lm_eval: str | None = None
    higher_is_better: bool = True

    def paired_forms(self, candidate: list, baseline: list) -> tuple[CountForm, CountForm] | None:
        """Both sides' count forms, comparable column by column; None without one."""
        if self.paired is not None:
            return self.paired(candidate, baseline)
        c, b = self.count_form(candidate), self.count_form(baseline)
        return (c, b) if c is not None and b is not None else None


_LMEVAL = "ecomharness.metrics.lmeval"
MEAN = Aggregation("mean", _mean_form)
IE_PRECISION = Aggregation("ie_precision", _ie_form(_ie_precision), lm_eval=f"{_LMEVAL}:ie_precision")
IE_RECALL = Aggregation("ie_recall", _ie_form(_ie_recall), lm_eval=f"{_LMEVAL}:ie_recall")
IE_F1 = Aggregation("ie_f1", _ie_form(_ie_f1), lm_eval=f"{_LMEVAL}:ie_f1")
SEQEVAL_F1 = Aggregation("seqeval_f1", _ie_form(_seqeval_f1), lm_eval=f"{_LMEVAL}:seqeval_f1")
BITS_PER_BYTE = Aggregation("bits_per_byte", _rolling_form(_bits_per_byte), higher_is_better=False)
WEIGHTED_PERPLEXITY = Aggregation("weighted_perplexity", _rolling_form(_weighted_perplexity), higher_is_better=False)
WEIGHTED_PERPLEXITY_OR_INF = Aggregation("weighted_perplexity_or_inf", _rolling_form(_weighted_perplexity),
                                         lm_eval=f"{_LMEVAL}:weighted_perplexity_or_inf", higher_is_better=False)
CLS_MACRO_F1, CLS_WEIGHTED_F1, F1_FINBEN, HEADLINES_AVG_F1, AVG_F1_FINBEN, F1_PIXIU, AVG_F1_PIXIU = (
    Aggregation(name, _label_form_of(name), _label_paired(name), lm_eval=f"{_LMEVAL}:{name}")
    for name in ("cls_macro_f1", "cls_weighted_f1", "f1_finben", "headlines_avg_f1", "avg_f1_finben", "f1_pixiu",
                 "avg_f1_pixiu"))
ECOMGPT_MICRO_F1 = Aggregation("ecomgpt_micro_f1", _ecomgpt_micro_form, lm_eval=f"{_LMEVAL}:ecomgpt_micro_f1")
ECOMGPT_MACRO_F1 = Aggregation("ecomgpt_macro_f1", _ecomgpt_macro_form, lm_eval=f"{_LMEVAL}:ecomgpt_macro_f1")
BUILTIN = (MEAN, IE_PRECISION, IE_RECALL, IE_F1, SEQEVAL_F1, BITS_PER_BYTE, WEIGHTED_PERPLEXITY,
           WEIGHTED_PERPLEXITY_OR_INF, CLS_MACRO_F1, CLS_WEIGHTED_F1,
           F1_FINBEN, HEADLINES_AVG_F1, AVG_F1_FINBEN, F1_PIXIU, AVG_F1_PIXIU, ECOMGPT_MICRO_F1, ECOMGPT_MACRO_F1)


def aggregation_record(name: str) -> Aggregation | None:
    """The registered record of an aggregation (built-in or a plugin's), or None."""
    return aggregations.find(name)


def count_form(aggregation: str, values: list) -> CountForm | None:
    """The count form of ``values`` (a task's per-document values of one metric, as its
    ``process_results`` returned them) under lm-eval aggregation ``aggregation``; None
    for an aggregation no plugin gave a count form (it then has no paired resampling
    test and no bootstrap error)."""
    record = aggregation_record(aggregation)
    return None if record is None else record.count_form(values)


def paired_count_forms(aggregation: str, candidate: list, baseline: list) -> tuple[CountForm, CountForm] | None:
    """Count forms of two sides' values on the same documents (``Aggregation.paired_forms``)."""
    record = aggregation_record(aggregation)
    return None if record is None else record.paired_forms(candidate, baseline)


def is_binary(form: CountForm) -> bool:
    """A ``mean`` metric whose every per-document value is 0 or 1 (accuracy, exact match)."""
    if not form.mean:
        return False
    x = form.counts[:, 0]
    return bool(np.all((x == 0) | (x == 1)))
