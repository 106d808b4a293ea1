"""The plugin's hook implementations, found through the ``ecomharness`` entry point."""

from pathlib import Path

from ecomharness import hookimpl


@hookimpl
def ecomharness_task_dirs():
    """The Shopping MMLU task folder, next to this file."""
    return [Path(__file__).resolve().parent / "tasks"]


@hookimpl
def ecomharness_metric_modules():
    """Imported before tasks are built: registers the skill score's aggregation."""
    return ["ecomharness_shopping_mmlu.metrics"]
