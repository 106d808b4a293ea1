"""List the task groups and tasks that installed plugins provide.

Shows each name with its kind and the plugin that provides it, and reports broken task
YAML files by file and reason (lm-eval itself skips them without a word). Exit code 2
when ``--check`` finds a broken task (a problem with input, like every other command).
"""

from __future__ import annotations

from ecomharness.errors import EXIT_INPUT, EXIT_OK

NAME = "tasks"
HELP = "list plugin task groups and tasks, and check their YAML"
EPILOG = """\
examples:
  ecomharness tasks                 # groups, then tasks, with their plugin
  ecomharness tasks --check         # exit 2 if a task file is broken (renders every task on a document)
  ecomharness tasks --check --include_path my_tasks/
  ecomharness tasks --json
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness tasks``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--check", action="store_true",
        help="also resolve every group's members and render every task's templates on its first "
             "document; exit with status 2 when anything is broken",
    )
    parser.add_argument("--include_path", default=None, help="a directory of your own task YAML to list and check")


def run(args) -> int:
    """Print the task table; with ``--check`` fail on broken task YAML."""
    import json

    from ecomharness.tasks.index import build_task_manager, import_metric_modules, plugin_task_dirs, task_origins
    from ecomharness.tasks.lint import (build_problems, check_sources, include_dirs, missing_group_members,
                                        report_problems)

    import_metric_modules()
    problems = check_sources(args.include_path)
    tm = build_task_manager(requested=["*"], include_path=args.include_path)
    origins = task_origins(tm, plugin_task_dirs() + include_dirs(args.include_path))
    if args.check and not problems:
        ours = [name for name in tm.all_subtasks if origins.get(name) != "lm-eval"]
        problems = missing_group_members(tm, [n for n in tm.all_groups if origins.get(n) != "lm-eval"])
        if not problems:
            problems = build_problems(tm, ours)
    report_problems(problems)
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
    return EXIT_INPUT if (args.check and problems) else EXIT_OK

