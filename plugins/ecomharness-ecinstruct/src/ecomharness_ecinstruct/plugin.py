"""The plugin's hook implementations, found through the ``ecomharness`` entry point."""

from pathlib import Path

from ecomharness import hookimpl


@hookimpl
def ecomharness_task_dirs():
    """The ECInstruct task folder, next to this file."""
    return [Path(__file__).resolve().parent / "tasks"]


@hookimpl
def ecomharness_metric_modules():
    """Imported before tasks are built: ecomharness's metrics, which these tasks'
    aggregations (``ie_f1``, ``cls_macro_f1``) name."""
    return ["ecomharness_ecinstruct.metrics"]
