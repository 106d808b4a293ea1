"""Print ONE directory through which lm-eval finds every installed plugin's tasks.

lm-eval's ``--include_path`` flag takes a single directory; this one holds links to the
task files of every plugin, so a plain lm-eval command line sees them all.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "tasks-path"
HELP = "print one --include_path directory for lm_eval covering every plugin's tasks"
EPILOG = """\
example:
  lm_eval --tasks ecom_icl --include_path "$(ecomharness tasks-path)" \\
      --model hf --model_args pretrained=MODEL_DIR --device cpu --limit 2
"""


def add_arguments(parser) -> None:
    """``tasks-path`` takes no flags."""


def run(args) -> int:
    """Build (or reuse) the combined directory and print its path."""
    from ecomharness.tasks.lint import check_plugin_tasks, report_problems
    from ecomharness.tasks.path import tasks_path

    report_problems(check_plugin_tasks())
    print(tasks_path())
    return EXIT_OK
