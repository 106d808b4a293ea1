"""Built-in plugin: modules that register our metrics and reference models with lm-eval."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl


@hookimpl
def ecomharness_metric_modules():
    """rougeL_zh & co. and our aggregations; the ecom-oracle and ecom-empty models."""
    return ["ecomharness.metrics.lmeval", "ecomharness.evaluation.reference_lms"]


@hookimpl
def ecomharness_aggregations():
    """Count forms of lm-eval's ``mean``, ``bits_per_byte`` and ``weighted_perplexity``
    and of every aggregation our tasks register (micro P/R/F1, macro and weighted F1,
    FinBen's and PIXIU 2023's, seqeval's entity F1, EcomGPT's micro and macro F1): the
    records in ``metrics/corpus.py``, imported on first use."""
    names = ("mean", "ie_precision", "ie_recall", "ie_f1", "bits_per_byte", "weighted_perplexity",
             "weighted_perplexity_or_inf", "cls_macro_f1",
             "cls_weighted_f1", "f1_finben", "headlines_avg_f1", "avg_f1_finben", "f1_pixiu",
             "avg_f1_pixiu", "seqeval_f1", "ecomgpt_micro_f1", "ecomgpt_macro_f1")
    return {name: f"ecomharness.metrics.corpus:{name.upper()}" for name in names}
