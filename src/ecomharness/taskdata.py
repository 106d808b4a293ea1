"""The name task YAML used for ``load_task`` before the task side became a package.

Task files copied from earlier releases say ``custom_dataset: !function
ecomharness.taskdata.load_task``; this keeps them loading. New YAML names
``ecomharness.tasks.data.load_task``.
"""

from ecomharness.tasks.data import load_task

__all__ = ["load_task"]
