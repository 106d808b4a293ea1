"""List the task groups and tasks that installed plugins provide.

Shows each name with its kind and the plugin that provides it, and reports broken task
YAML files by file and reason (lm-eval itself skips them without a word).
"""

from __future__ import annotations

NAME = "tasks"
HELP = "list plugin task groups and tasks, and check their YAML"
EPILOG = """\
examples:
  ecomharness tasks                 # groups, then tasks, with their plugin
  ecomharness tasks --check         # exit 1 if any plugin task file is broken
  ecomharness tasks --json
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness tasks``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a task file is broken"
    )


def run(args) -> int:
    """Print the task table; with ``--check`` fail on broken task YAML."""
    import json

    from ecomharness import tasks as plugin_tasks

    plugin_tasks.import_metric_modules()
    problems = plugin_tasks.check_plugin_tasks()
    plugin_tasks.report_problems(problems)
    tm = plugin_tasks.build_task_manager(requested=["*"])
    origins = plugin_tasks.task_origins(tm)
    rows = []
    for name in tm.all_tasks:
        if name in tm.all_groups:
            kind = "group"
        elif name in tm.all_tags:
            kind = "tag"
        else:
            kind = "task"
        rows.append({"name": name, "kind": kind, "plugin": origins.get(name, "?")})
    order = {"group": 0, "tag": 1, "task": 2}
    rows.sort(key=lambda r: (order[r["kind"]], r["name"]))
    if args.json:
        print(json.dumps({"tasks": rows, "problems": [str(p) for p in problems]}, indent=2))
    else:
        width = max([len(r["name"]) for r in rows] + [4])
        print(f"{'name':<{width}}  {'kind':<5}  plugin")
        for r in rows:
            print(f"{r['name']:<{width}}  {r['kind']:<5}  {r['plugin']}")
        if not rows:
            print("(no tasks: no installed plugin provides a task directory)")
    return 1 if (args.check and problems) else 0
