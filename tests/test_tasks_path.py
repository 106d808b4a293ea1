"""`ecomharness tasks-path`: one directory through which lm-eval sees all plugin tasks."""

from __future__ import annotations

from pathlib import Path

from ecomharness.tasks.index import TaskDir
from ecomharness.tasks.path import tasks_path
from tests.conftest import REPO, run_cli


def test_tree_links_every_plugin_file_and_is_stable(tmp_path, monkeypatch):
    monkeypatch.setenv("ECOMHARNESS_CACHE", str(tmp_path / "cache"))
    a = tmp_path / "a"
    a.mkdir()
    (a / "t.yaml").write_text("task: t\n")
    dirs = [TaskDir("bundled", REPO / "tasks"), TaskDir("a", a)]
    first = tasks_path(dirs)
    assert first == tasks_path(dirs)  # reused, not rebuilt
    link = first / "a" / "t.yaml"
    assert link.is_symlink() and link.resolve() == (a / "t.yaml").resolve()
    assert (first / "bundled" / "ecom_icl" / "ecom_icl_pdc.yaml").is_file()
    (a / "u.yaml").write_text("task: u\n")
    second = tasks_path(dirs)
    assert second != first and (second / "a" / "u.yaml").is_file()


def test_lm_eval_task_manager_finds_plugin_tasks_through_it(tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("ECOMHARNESS_CACHE", str(tmp_path / "cache"))
    result = run_cli("tasks-path", env={"ECOMHARNESS_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.is_dir() and path.is_relative_to(tmp_path / "cache")
    tm = TaskManager(include_path=str(path), include_defaults=False)
    assert "ecom_icl_pdc" in tm.all_tasks
    loaded = tm.load(["ecom_icl_pdc"])["tasks"]["ecom_icl_pdc"]
    assert len(list(loaded.test_docs())) == 40
