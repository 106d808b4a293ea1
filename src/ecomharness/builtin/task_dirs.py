"""Built-in plugin: the task groups bundled in ``tasks/`` and the metrics they use."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl
from ecomharness.resources import bundled_path


@hookimpl
def ecomharness_task_dirs():
    """The bundled task folder (ecom_icl, ecom_sft, general_icl, flare, ...)."""
    return [bundled_path("tasks")]
