"""Plugin task directories -> lm-eval's TaskManager.

lm-eval 0.4.13 has no task plugins: ``TaskManager`` scans its own tasks plus
``include_path``. This module collects every plugin's task directories, checks their
YAML (lm-eval skips a broken file silently), builds a TaskManager over them, and makes
the single directory that lm-eval's ``--include_path`` flag can take.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecomharness.plugins import PluginError, plugin_results
from ecomharness.util import cache_root, did_you_mean


@dataclass(frozen=True)
class TaskDir:
    """One task directory and the plugin that provides it."""

    plugin: str
    path: Path


@dataclass(frozen=True)
class TaskProblem:
    """A task YAML file that lm-eval would skip or fail on, and why."""

    file: Path
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.reason}"


def plugin_task_dirs() -> list[TaskDir]:
    """Every task directory that the installed plugins provide, in plugin order.

    Raises ``PluginError`` when a plugin returns something that is not an existing
    directory, naming the plugin.
    """
    dirs: list[TaskDir] = []
    for plugin, value in plugin_results("ecomharness_task_dirs"):
        if isinstance(value, (str, os.PathLike)):
            raise PluginError(
                f"plugin {plugin!r}: ecomharness_task_dirs must return a list of paths, "
                f"got a single path {value!r}"
            )
        for raw in value:
            path = Path(raw).expanduser().resolve()
            if not path.is_dir():
                raise PluginError(
                    f"plugin {plugin!r}: task directory {path} does not exist or is not a directory"
                )
            dirs.append(TaskDir(plugin, path))
    return dirs


# ---------------------------------------------------------------- YAML check


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


# ---------------------------------------------------------------- TaskManager


def _is_yaml_path(spec: str) -> bool:
    return spec.endswith(".yaml")


def build_task_manager(
    requested: list[str] | None = None,
    include_path: str | os.PathLike | list | None = None,
    metadata: dict | None = None,
):
    """Build an lm-eval ``TaskManager`` over every plugin's tasks plus ``include_path``.

    Indexing lm-eval's ~14,700 built-in tasks costs seconds, so they are left out when
    every requested name (globs included) matches one of ours; a request for any other
    name, or no request at all, includes them. Plugin directories come first and the
    user's ``include_path`` last, so the user's own task of the same name wins.
    """
    from lm_eval.tasks import TaskManager

    paths: list[str] = [str(d.path) for d in plugin_task_dirs()]
    if include_path:
        extra = include_path if isinstance(include_path, (list, tuple)) else [include_path]
        paths.extend(str(Path(p).expanduser().resolve()) for p in extra)
    ours = TaskManager(include_path=paths, include_defaults=False, metadata=metadata or {})
    names = [t for t in (requested or []) if not _is_yaml_path(t)]
    if requested and all(ours.match_tasks([name]) for name in names):
        return ours
    return TaskManager(include_path=paths, include_defaults=True, metadata=metadata or {})


def import_metric_modules() -> list[str]:
    """Import every module that plugins name in ``ecomharness_metric_modules``.

    Must run before lm-eval builds tasks, so that metrics registered by name exist.
    Returns the module names imported.
    """
    # lm-eval fills its metric registry lazily, only while the registry is empty: a
    # plugin registering first would leave the built-in metrics (acc, ...) unregistered.
    import lm_eval.api.metrics  # noqa: F401

    imported = []
    for plugin, modules in plugin_results("ecomharness_metric_modules"):
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:
                raise PluginError(
                    f"plugin {plugin!r}: metric module {name!r} failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            imported.append(name)
    return imported


# ---------------------------------------------------------------- tasks-path


def tasks_path(dirs: list[TaskDir] | None = None) -> Path:
    """Return ONE directory through which lm-eval sees every plugin's tasks.

    lm-eval's CLI ``--include_path`` takes a single directory, so this builds a tree
    of real sub-directories (one per plugin) holding symbolic links to each plugin's
    files. Links keep edits to the plugins live; the tree itself is keyed by a hash of
    the file list, so it is rebuilt only when files are added or removed, and it is
    moved into place atomically so concurrent callers never see half a tree.
    """
    dirs = plugin_task_dirs() if dirs is None else dirs
    files: list[tuple[str, Path, Path]] = []
    for task_dir in dirs:
        for src in sorted(task_dir.path.rglob("*")):
            if src.is_file() and "__pycache__" not in src.parts:
                files.append((task_dir.plugin, src.relative_to(task_dir.path), src))
    digest = hashlib.sha256()
    for plugin, rel, src in files:
        digest.update(f"{plugin}\0{rel}\0{src}\n".encode())
    env_key = hashlib.sha256(sys.prefix.encode()).hexdigest()[:10]
    parent = cache_root() / "tasks-path" / env_key
    target = parent / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    for plugin, rel, src in files:
        link = staging / plugin / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(src)
    try:
        staging.rename(target)
    except OSError:  # another process won the race; its tree is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target


def walk_index(task_manager, names: list) -> list[str]:
    """Every task, group and tag name under the given names, each once, depth first:
    groups and tags expanded through the TaskManager's index (an inline member by its
    ``task`` name); YAML paths and unknown names skipped."""
    order: list[str] = []
    seen: set[str] = set()

    def walk(name) -> None:
        if not isinstance(name, str) or name in seen:
            return
        seen.add(name)
        entry = task_manager.task_index.get(name)
        if entry is None:
            return
        order.append(name)
        cfg = entry.cfg or {}
        if "group" in cfg:
            members = cfg.get("task") or []
            for member in members if isinstance(members, list) else [members]:
                walk(member.get("task") if isinstance(member, dict) else member)
        elif entry.tags and not cfg:
            for member in sorted(entry.tags):
                walk(member)

    for name in names:
        walk(name)
    return order


def leaf_task_configs(task_manager, names: list) -> list[dict]:
    """The merged YAML configs of the leaf tasks under the given names (``walk_index``)."""
    configs = [task_manager.task_index[name].cfg or {} for name in walk_index(task_manager, names)]
    return [cfg for cfg in configs if cfg and "group" not in cfg]


def task_origins(task_manager, dirs: list[TaskDir] | None = None) -> dict[str, str]:
    """Map each task, group and tag name in a TaskManager to the plugin (or other task
    directory, ``dirs``) providing it; ``lm-eval`` for its own."""
    dirs = plugin_task_dirs() if dirs is None else dirs
    origins: dict[str, str] = {}
    for name, entry in task_manager.task_index.items():
        path = getattr(entry, "yaml_path", None)
        origin = "lm-eval"
        if path is not None:
            resolved = Path(path).resolve()
            for task_dir in dirs:
                if resolved.is_relative_to(task_dir.path):
                    origin = task_dir.plugin
        elif entry.tags:  # a tag: the plugin of its first member
            member = sorted(entry.tags)[0]
            member_entry = task_manager.task_index.get(member)
            if member_entry is not None and member_entry.yaml_path is not None:
                for task_dir in dirs:
                    if Path(member_entry.yaml_path).resolve().is_relative_to(task_dir.path):
                        origin = task_dir.plugin
        origins[name] = origin
    return origins
