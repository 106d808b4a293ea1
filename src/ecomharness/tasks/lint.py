"""One check for task YAML from every source: plugins (the bundled tasks are one),
``--include_path`` directories, and the tasks lm-eval has built.

Three passes, each naming file and line:

1. static, per file (``check_task_dir``): YAML, includes, keys, ``!function``,
   duplicate names, and the Jinja syntax of every template field;
2. group members: every member a group names must resolve in the TaskManager;
3. rendering: every template of every built task is rendered on its first document,
   so an undefined variable or a filter error is reported here, naming the task's
   YAML file, instead of crashing the evaluation with a traceback that names none.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ecomharness.errors import UserError
from ecomharness.tasks.index import TaskDir, leaf_names, plugin_task_dirs, task_file
from ecomharness.util import did_you_mean


@dataclass(frozen=True)
class TaskProblem:
    """A task YAML file that lm-eval would skip or fail on, and why."""

    file: Path
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.reason}"


# ---------------------------------------------------------------- pass 1: each file


class _FunctionRef(str):
    """The text of a ``!function module.attr`` tag, with the line it stands on."""

    line: int = 0


def _yaml_loader() -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def construct_function(loader: yaml.SafeLoader, node: yaml.Node) -> _FunctionRef:
        ref = _FunctionRef(loader.construct_scalar(node))  # type: ignore[arg-type]
        ref.line = node.start_mark.line + 1
        return ref

    Loader.add_constructor("!function", construct_function)
    return Loader


_LOADER = _yaml_loader()


def _task_fields() -> tuple[set[str], set[str]]:
    from lm_eval.config.group import GroupConfig
    from lm_eval.config.task import TaskConfig

    return (
        {f.name for f in dataclasses.fields(TaskConfig)},
        {f.name for f in dataclasses.fields(GroupConfig)},
    )


def _load_with_includes(
    path: Path, problems: list[TaskProblem], seen: tuple[Path, ...] = ()
) -> dict[str, Any] | None:
    """Parse one YAML file and merge its ``include`` chain the way lm-eval does."""
    if path in seen:
        problems.append(TaskProblem(seen[-1], None, f"include cycle through {path.name}"))
        return None
    try:
        with path.open("rb") as fh:
            cfg = yaml.load(fh, Loader=_LOADER)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problems.append(TaskProblem(path, line, f"invalid YAML: {exc.problem or exc}"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(TaskProblem(path, None, f"cannot read: {exc}"))
        return None
    if not isinstance(cfg, dict):
        problems.append(
            TaskProblem(path, 1, f"expected a mapping at the top level, got {type(cfg).__name__}")
        )
        return None
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        if not inc_path.is_file():
            problems.append(TaskProblem(path, None, f"include file {inc!r} not found ({inc_path})"))
            return None
        base = _load_with_includes(inc_path.resolve(), problems, (*seen, path))
        if base is None:
            return None
        merged.update(base)
    merged.update(cfg)
    return merged


def _function_refs(value: Any):
    if isinstance(value, _FunctionRef):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _function_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _function_refs(item)


def _defines(module_file: Path, name: str) -> bool:
    tree = ast.parse(module_file.read_text(encoding="utf-8"), filename=str(module_file))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return True
        if isinstance(node, (ast.ImportFrom, ast.Import)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
    return False


def _check_function_ref(path: Path, ref: _FunctionRef) -> str | None:
    module_name, _, attr = ref.rpartition(".")
    if not module_name:
        return f"!function {ref!r} needs the form module.function"
    local = path.parent / f"{module_name.replace('.', '/')}.py"
    if local.is_file():
        try:
            found = _defines(local, attr)
        except SyntaxError as exc:
            return f"!function {ref}: {local.name} has a syntax error on line {exc.lineno}"
        return None if found else f"!function {ref}: {local.name} defines no {attr!r}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return f"!function {ref}: no {local.name} beside the file and module {module_name!r} cannot be imported ({exc})"
    if not hasattr(module, attr):
        return f"!function {ref}: module {module_name!r} has no attribute {attr!r}"
    return None


def _unknown_keys(cfg: dict[str, Any], allowed: set[str]) -> list[str]:
    messages = []
    for key in cfg:
        if key not in allowed:
            messages.append(f"unknown key {key!r}{did_you_mean(key, allowed)}")
    return messages


TEMPLATE_KEYS = ("doc_to_text", "doc_to_target", "doc_to_choice", "doc_to_decontamination_query")


def key_line(path: Path, key: str) -> int | None:
    """The line on which ``key:`` stands in a YAML file (first occurrence), or None."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*:")
    try:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.match(line):
                return number
    except (OSError, UnicodeDecodeError):
        return None
    return None


def template_syntax_problems(path: Path, cfg: dict[str, Any]) -> list[TaskProblem]:
    """Jinja syntax errors in a task's template fields, at the file line they fall on."""
    from jinja2 import TemplateSyntaxError
    from lm_eval.utils import env

    problems = []
    for key in TEMPLATE_KEYS:
        value = cfg.get(key)
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            continue
        try:
            env.parse(value)
        except TemplateSyntaxError as exc:
            line = key_line(path, key)
            # A block scalar's template starts on the line after its key.
            where = None if line is None else line + max((exc.lineno or 1) - 1, 0) + (1 if "\n" in value else 0)
            problems.append(TaskProblem(path, where, f"{key}: Jinja syntax error: {exc.message}"))
    return problems


def check_task_dir(directory: Path) -> list[TaskProblem]:
    """Check every ``*.yaml`` under a task directory the way lm-eval will read it.

    Reports what lm-eval 0.4.13 skips silently (after which the user only sees "not a
    registered task"): invalid YAML, a missing include, a file with neither ``task`` nor
    ``group``, unknown config keys, a ``!function`` that does not resolve, and a task
    name defined twice. Returns the problems found; an empty list means all is well.
    """
    task_keys, group_keys = _task_fields()
    problems: list[TaskProblem] = []
    names: dict[str, Path] = {}
    for path in sorted(directory.rglob("*.yaml")):
        if any(part in ("__pycache__", ".ipynb_checkpoints") for part in path.parts):
            continue
        found: list[TaskProblem] = []
        cfg = _load_with_includes(path.resolve(), found)
        problems.extend(found)
        if cfg is None:
            continue
        if "class" in cfg:  # Python-defined task: its keys are the class's business
            kind, allowed = "task", None
        elif "group" in cfg:
            kind, allowed = "group", group_keys
        elif "task" in cfg:
            kind, allowed = "task", task_keys
        else:
            problems.append(
                TaskProblem(path, None, "has neither 'task' nor 'group': lm-eval skips this file")
            )
            continue
        if allowed is not None:
            for message in _unknown_keys(cfg, allowed):
                problems.append(TaskProblem(path, None, message))
        for ref in _function_refs(cfg):
            if (message := _check_function_ref(path, ref)) is not None:
                problems.append(TaskProblem(path, ref.line or None, message))
        if kind == "task":
            problems.extend(template_syntax_problems(path, cfg))
        name = cfg.get(kind)
        if not isinstance(name, str):
            problems.append(TaskProblem(path, None, f"{kind!r} must be a string, got {name!r}"))
            continue
        if name in names:
            problems.append(
                TaskProblem(path, None, f"{kind} {name!r} is already defined in {names[name]}")
            )
        else:
            names[name] = path
    return problems


def check_plugin_tasks(dirs: list[TaskDir] | None = None) -> list[TaskProblem]:
    """Check the task YAML of every plugin (or of the given directories)."""
    problems: list[TaskProblem] = []
    for task_dir in dirs if dirs is not None else plugin_task_dirs():
        problems.extend(check_task_dir(task_dir.path))
    return problems


def report_problems(problems: list[TaskProblem], stream=None) -> None:
    """Print task YAML problems to stderr, one line each, so they are not lost."""
    stream = stream or sys.stderr
    for problem in problems:
        stream.write(f"ecomharness: broken task file: {problem}\n")


# ---------------------------------------------------------------- passes 2 and 3: built tasks


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
            file = task_file(task_manager, name)
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
        file = task_file(task_manager, name)
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
            file = task_file(task_manager, name)
            line = _failing_key_line(file, exc)
            problems.append(TaskProblem(file, line, f"task {name} cannot be built: {type(exc).__name__}: {exc}"))
            continue
        problems.extend(rendering_problems(loaded, task_manager))
    return problems


def _failing_key_line(file: Path, exc: Exception) -> int | None:
    """The line of the template a Jinja error comes from: the template line naming the
    undefined variable, or the only template line; else unknown."""
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


def checking_loads(task_manager, then: Callable[[dict], dict] | None = None):
    """Make ``task_manager.load`` check what it builds (for ``simple_evaluate``, which
    loads the tasks itself): the same TaskManager, its ``load`` wrapped once. ``then``,
    when given, is applied to what was built and checked (the evaluation's guards on
    the built tasks, ``evaluation.guard``)."""
    original = task_manager.load

    def load(names, *args, **kwargs):
        loaded = _load(lambda n: original(n, *args, **kwargs), task_manager, names)
        return then(loaded) if then is not None else loaded

    task_manager.load = load
    return task_manager


def _message(problems: list[TaskProblem]) -> str:
    return "broken task definition(s):\n  " + "\n  ".join(str(p) for p in problems)
