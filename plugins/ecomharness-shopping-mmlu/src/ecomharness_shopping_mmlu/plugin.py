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


@hookimpl
def ecomharness_aggregations():
    """The skill score's count form: paired tests and bootstrap errors on it."""
    return {"skill_score": "ecomharness_shopping_mmlu.metrics:SKILL_SCORE"}
