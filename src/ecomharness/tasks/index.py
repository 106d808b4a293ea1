"""Where tasks are found: every plugin's task directories, lm-eval's TaskManager over
them, and walks over its index (groups and tags down to leaf tasks).

lm-eval 0.4.13 has no task plugins: ``TaskManager`` scans its own tasks plus
``include_path``. This module collects every plugin's task directories and builds a
TaskManager over them; ``lint`` checks their YAML, ``path`` makes the one directory
lm-eval's ``--include_path`` takes, ``open`` resolves requested names.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from ecomharness.plugins import PluginError, plugin_results


@dataclass(frozen=True)
class TaskDir:
    """One task directory and the plugin that provides it."""

    plugin: str
    path: Path


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


# ---------------------------------------------------------------- walking the index


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


def leaf_names(task_manager, names: list) -> list[str]:
    """The leaf task names under task, group and tag names."""
    return [cfg["task"] for cfg in leaf_task_configs(task_manager, names) if isinstance(cfg.get("task"), str)]


def task_file(task_manager, name: str) -> Path:
    """The YAML file that defines a task or group (its name when it has none)."""
    entry = task_manager.task_index.get(name)
    return Path(entry.yaml_path) if entry is not None and getattr(entry, "yaml_path", None) else Path(name)
