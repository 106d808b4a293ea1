"""The generated task files are what their generators write: running tasks/_make_yaml.py
and tasks/_make_samples.py on a copy of tasks/ changes no byte and adds no file."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.parametrize("script", ["_make_yaml.py", "_make_samples.py"])
def test_generated_files_match_their_generator(tmp_path, script):
    copy = tmp_path / "tasks"
    shutil.copytree(REPO / "tasks", copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = _files(copy)
    result = subprocess.run([sys.executable, str(copy / script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    after = _files(copy)
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    assert changed == [], f"{script} writes files that differ from the committed ones: {changed[:10]}"
