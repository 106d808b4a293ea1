"""Built-in plugin: modules that register our metrics and reference models with lm-eval."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl


@hookimpl
def ecomharness_metric_modules():
    """rougeL_zh & co. and our aggregations; the ecom-oracle and ecom-empty models."""
    return ["ecomharness.metrics.lmeval", "ecomharness.evaluation.reference_lms"]
