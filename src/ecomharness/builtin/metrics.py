"""Built-in plugin: the metric module that registers our metrics with lm-eval."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl


@hookimpl
def ecomharness_metric_modules():
    """``ecomharness.metrics.lmeval`` registers rougeL_zh & co. and our aggregations."""
    return ["ecomharness.metrics.lmeval"]
