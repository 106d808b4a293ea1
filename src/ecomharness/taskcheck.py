"""One check for task YAML from every source: plugins (the bundled tasks are one),
``--include_path`` directories, and the tasks lm-eval has built.

Three passes, each naming file and line:

1. static, per file (``tasks.check_task_dir``): YAML, includes, keys, ``!function``,
   duplicate names, and the Jinja syntax of every template field;
2. group members: every member a group names must resolve in the TaskManager;
3. rendering: every template of every built task is rendered on its first document,
   so an undefined variable or a filter error is reported here, naming the task's
   YAML file, instead of crashing the evaluation with a traceback that names none.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.taskdata import check_locations
from ecomharness.tasks import (
    TEMPLATE_KEYS,
    TaskDir,
    TaskProblem,
    build_task_manager,
    check_plugin_tasks,
    import_metric_modules,
    key_line,
    leaf_task_configs,
    plugin_task_dirs,
    report_problems,
    walk_index,
)
from ecomharness.util import did_you_mean


def include_dirs(include_path) -> list[TaskDir]:
    """``--include_path`` values as task directories; a missing one is a ``UserError``."""
    if not include_path:
        return []
    values = include_path if isinstance(include_path, (list, tuple)) else [include_path]
    dirs = []
    for value in values:
        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise UserError(f"--include_path {value}: not a directory")
        dirs.append(TaskDir("--include_path", path))
    return dirs


def check_sources(include_path=None) -> list[TaskProblem]:
    """Pass 1 over every plugin's task directory and every ``--include_path`` directory."""
    return check_plugin_tasks(plugin_task_dirs() + include_dirs(include_path))


def missing_group_members(task_manager, names: list | None = None) -> list[TaskProblem]:
    """Pass 2: members named by the groups under ``names`` (default: every group in the
    index) that the TaskManager does not know."""
    index = task_manager.task_index
    problems, seen = [], set()
    todo = list(names if names is not None else [n for n, e in index.items() if "group" in (e.cfg or {})])
    while todo:
        name = todo.pop()
        if not isinstance(name, str) or name in seen or name not in index:
            continue
        seen.add(name)
        entry = index[name]
        cfg = entry.cfg or {}
        if "group" not in cfg:
            todo.extend(sorted(entry.tags) if entry.tags and not cfg else [])
            continue
        members = cfg.get("task") or []
        for member in members if isinstance(members, list) else [members]:
            if isinstance(member, dict):
                continue  # an inline task definition, checked as a task
            if member in index or task_manager.match_tasks([member]):
                todo.append(member)
                continue
            file = _file_of(task_manager, name)
            problems.append(TaskProblem(file, key_line(file, "task"),
                                        f"group {name!r} names {member!r}, which is not a registered task or group"))
    return problems


def rendering_problems(loaded: dict, task_manager) -> list[TaskProblem]:
    """Pass 3: render each template of each built task (``TaskManager.load``'s
    ``{"tasks": {name: Task}, "groups": ...}``) on its first document."""
    problems = []
    for task in loaded.get("tasks", {}).values():
        docs = task.eval_docs
        if docs is None or len(docs) == 0:
            continue
        doc = docs[0]
        name = task.config.task
        file = _file_of(task_manager, name)
        for key, render in (("doc_to_text", task.doc_to_text), ("doc_to_target", task.doc_to_target),
                            ("doc_to_choice", task.doc_to_choice)):
            if getattr(task.config, key, None) is None:
                continue
            try:
                render(doc)
            except Exception as exc:  # noqa: BLE001 - any failure here is the task's, reported with its file
                problems.append(TaskProblem(file, key_line(file, key),
                                            f"task {name}: {key} fails on the first document: "
                                            f"{type(exc).__name__}: {exc}"))
    return problems


def build_problems(task_manager, names: list[str], load=None) -> list[TaskProblem]:
    """Build each named task on its own (lm-eval renders a task's templates on a
    document while building it) and render it: every failure, with the task's file."""
    load = load or task_manager.load
    problems = []
    for name in names:
        try:
            loaded = load([name])
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported with the task's file, like any other problem
            file = _file_of(task_manager, name)
            line = _failing_key_line(file, exc)
            problems.append(TaskProblem(file, line, f"task {name} cannot be built: {type(exc).__name__}: {exc}"))
            continue
        problems.extend(rendering_problems(loaded, task_manager))
    return problems


def _file_of(task_manager, name: str) -> Path:
    """The YAML file that defines a task or group (its name when it has none)."""
    entry = task_manager.task_index.get(name)
    return Path(entry.yaml_path) if entry is not None and getattr(entry, "yaml_path", None) else Path(name)


def _failing_key_line(file: Path, exc: Exception) -> int | None:
    """The line of the template a Jinja error comes from: the template line naming the
    undefined variable, or the only template line; else unknown."""
    import re

    from jinja2 import TemplateError

    if not isinstance(exc, TemplateError):
        return None
    try:
        text = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    lines = [line for key in TEMPLATE_KEYS if (line := key_line(file, key)) is not None
             and ("{{" in text[line - 1] or "{%" in text[line - 1])]
    named = re.match(r"'(\w+)' is undefined", str(exc))
    if named:
        lines = [line for line in lines if named.group(1) in text[line - 1]] or lines
    return lines[0] if len(lines) == 1 else None


def leaf_names(task_manager, names: list) -> list[str]:
    """The leaf task names under task, group and tag names."""
    return [cfg["task"] for cfg in leaf_task_configs(task_manager, names) if isinstance(cfg.get("task"), str)]


def load_checked(task_manager, names: list) -> dict:
    """``task_manager.load(names)`` with pass 2 before and pass 3 after; a task that
    cannot be built is found and named. Any problem is a ``UserError`` listing all."""
    problems = missing_group_members(task_manager, names)
    if problems:
        raise UserError(_message(problems))
    return _load(task_manager.load, task_manager, names)


def _load(load, task_manager, names):
    try:
        loaded = load(names)
    except UserError:
        raise
    except Exception as exc:
        problems = build_problems(task_manager, leaf_names(task_manager, names), load)
        if problems:
            raise UserError(_message(problems)) from exc
        raise
    problems = rendering_problems(loaded, task_manager)
    if problems:
        raise UserError(_message(problems))
    return loaded


def checking_loads(task_manager):
    """Make ``task_manager.load`` check what it builds (for ``simple_evaluate``, which
    loads the tasks itself): the same TaskManager, its ``load`` wrapped once."""
    original = task_manager.load
    task_manager.load = lambda names, *args, **kwargs: _load(
        lambda n: original(n, *args, **kwargs), task_manager, names)
    return task_manager


def _message(problems: list[TaskProblem]) -> str:
    return "broken task definition(s):\n  " + "\n  ".join(str(p) for p in problems)


# ---------------------------------------------------------------- opening tasks


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
    files = {_file_of(task_manager, name).resolve() for name in walk_index(task_manager, resolved)}
    blocking = [p for p in problems or [] if Path(p.file).resolve() in files] + missing_group_members(task_manager, resolved)
    if blocking:
        raise UserError("broken task definition(s):\n  " + "\n  ".join(str(p) for p in blocking))

    # Every folder missing from the user's data is named at once, before any is read.
    check_locations(leaf_task_configs(task_manager, resolved), dict(task_manager.metadata or {}))
    return resolved
