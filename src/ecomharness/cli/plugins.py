"""List installed ecomharness plugins and what each contributes.

Plugins are found through the ``ecomharness`` entry-point group; the built-in features
appear here too, because they are registered the same way.
"""

from __future__ import annotations

from ecomharness.errors import EXIT_OK

NAME = "plugins"
HELP = "list installed plugins with their distribution, version and hooks"
EPILOG = """\
examples:
  ecomharness plugins
  ecomharness plugins --json
  ECOMHARNESS_PLUGINS=ecom_tasks ecomharness plugins    # load only the named plugins
"""


def add_arguments(parser) -> None:
    """Flags of ``ecomharness plugins``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    """Print one entry per plugin, with the task directories it provides."""
    import dataclasses
    import json

    from ecomharness.plugins import list_plugins, plugin_results

    task_dirs: dict[str, list[str]] = {}
    for plugin, dirs in plugin_results("ecomharness_task_dirs"):
        task_dirs.setdefault(plugin, []).extend(str(d) for d in dirs)
    infos = list_plugins()
    if args.json:
        payload = [
            {**dataclasses.asdict(info), "task_dirs": task_dirs.get(info.name, [])}
            for info in infos
        ]
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    for info in infos:
        print(f"{info.name}  ({info.distribution} {info.version}, module {info.module})")
        print(f"  hooks: {', '.join(info.hooks) or '-'}")
        for path in task_dirs.get(info.name, []):
            print(f"  task dir: {path}")
    if not infos:
        print("(no plugins installed)")
    return EXIT_OK
