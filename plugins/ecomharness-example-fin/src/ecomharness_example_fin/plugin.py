"""The plugin's hook implementations, found through the ``ecomharness`` entry point."""

from pathlib import Path

from ecomharness import hookimpl


@hookimpl
def ecomharness_task_dirs():
    """Our task folder, next to this file."""
    return [Path(__file__).resolve().parent / "tasks"]


@hookimpl
def ecomharness_metric_modules():
    """The module that registers ``sentiment_match`` with lm-eval."""
    return ["ecomharness_example_fin.metrics"]
