"""``ecomharness tasks-path``: the one directory through which lm-eval's CLI sees every
plugin's tasks."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

from ecomharness.tasks.index import TaskDir, plugin_task_dirs
from ecomharness.util import cache_root


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
