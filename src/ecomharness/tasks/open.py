"""Opening tasks: the prelude every evaluation shares (metric modules, task check,
TaskManager, name resolution), in one place."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.tasks.data import check_locations
from ecomharness.tasks.index import build_task_manager, import_metric_modules, leaf_task_configs, task_file, walk_index
from ecomharness.tasks.lint import TaskProblem, check_sources, missing_group_members, report_problems
from ecomharness.util import did_you_mean


@dataclass(frozen=True)
class OpenTasks:
    """What every consumer of tasks starts from: the TaskManager, the resolved names
    and the broken task files found (already reported on stderr)."""

    manager: Any
    names: list
    problems: list[TaskProblem]


def open_tasks(requested: list[str], include_path=None, metadata: dict | None = None) -> OpenTasks:
    """The prelude every evaluation shares, in one place: import the plugins' metric
    modules, check every task source (reporting what is broken), build the TaskManager
    and resolve the requested names (``UserError`` for unknown names, broken files
    behind them, group members that do not resolve, and missing data folders)."""
    import_metric_modules()
    problems = check_sources(include_path)
    report_problems(problems)
    manager = build_task_manager(requested, include_path=include_path, metadata=metadata)
    return OpenTasks(manager, resolve_tasks(requested, manager, problems), problems)


def resolve_tasks(requested: list[str], task_manager, problems: list | None = None) -> list:
    """Turn task names, globs and YAML paths into what ``simple_evaluate`` takes.

    Mirrors lm-eval's own resolution, but an unknown name raises ``UserError`` with the
    closest known names (and the broken task files found, ``problems``), instead of
    lm-eval's bare "Tasks not found"; a group naming an unknown member is an error too.
    """
    resolved: list = []
    missing: list[str] = []
    for spec in dict.fromkeys(requested):
        if spec.endswith(".yaml"):
            # TaskManager.load() takes YAML paths as they are.
            matches = sorted(str(Path(f).resolve()) for f in glob.glob(spec))
        else:
            matches = task_manager.match_tasks([spec])
        if not matches:
            missing.append(spec)
        for match in matches:
            if match not in resolved:
                resolved.append(match)
    if missing:
        lines = []
        for name in missing:
            lines.append(f"{name!r}{did_you_mean(name, task_manager.all_tasks, n=3)}")
        broken = "".join(f"\n  broken task file: {p}" for p in problems or [])
        raise UserError(
            "not a registered task: " + "; ".join(lines)
            + ". See `ecomharness tasks` for what is installed" + (f"; perhaps one of these:{broken}" if broken else ".")
        )
    # A broken file behind a requested task stops the run here, naming the file; broken
    # files elsewhere were reported and do not block other tasks.
    files = {task_file(task_manager, name).resolve() for name in walk_index(task_manager, resolved)}
    blocking = [p for p in problems or [] if Path(p.file).resolve() in files] + missing_group_members(task_manager, resolved)
    if blocking:
        raise UserError("broken task definition(s):\n  " + "\n  ".join(str(p) for p in blocking))

    # Every folder missing from the user's data is named at once, before any is read.
    check_locations(leaf_task_configs(task_manager, resolved), dict(task_manager.metadata or {}))
    return resolved
