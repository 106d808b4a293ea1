"""Broken task YAML is reported with its file, line and reason."""

from __future__ import annotations

from pathlib import Path

from ecomharness.tasks.lint import check_task_dir
from tests.conftest import REPO, make_plugin_on_path, run_cli


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _reasons(tmp_path):
    return [(p.file.name, p.line, p.reason) for p in check_task_dir(tmp_path)]


def test_bundled_tasks_have_no_problems():
    assert check_task_dir(REPO / "tasks") == []


def test_invalid_yaml_is_reported_with_its_line(tmp_path):
    _write(tmp_path, "bad.yaml", "task: bad\ndoc_to_text: [unclosed\nmetadata:\n  version: 1\n")
    [(name, line, reason)] = _reasons(tmp_path)
    assert name == "bad.yaml" and line is not None and line >= 2
    assert reason.startswith("invalid YAML")


def test_missing_include_is_reported(tmp_path):
    _write(tmp_path, "a.yaml", "include: _nope_template\ntask: a\n")
    [(name, _, reason)] = _reasons(tmp_path)
    assert name == "a.yaml" and "include file '_nope_template' not found" in reason


def test_file_with_neither_task_nor_group(tmp_path):
    _write(tmp_path, "c.yaml", "dataset_path: x\n")
    [(_, _, reason)] = _reasons(tmp_path)
    assert "neither 'task' nor 'group'" in reason


def test_unknown_key_suggests_the_close_one(tmp_path):
    _write(tmp_path, "d.yaml", "task: d\ndoc_to_txt: '{{x}}'\n")
    [(_, _, reason)] = _reasons(tmp_path)
    assert "unknown key 'doc_to_txt'" in reason and "doc_to_text" in reason


def test_unresolvable_function_reference(tmp_path):
    _write(tmp_path, "utils.py", "def present(**kw):\n    return {}\n")
    _write(tmp_path, "e.yaml", "task: e\ncustom_dataset: !function utils.absent\n")
    _write(tmp_path, "f.yaml", "task: f\ncustom_dataset: !function utils.present\n")
    _write(tmp_path, "g.yaml", "task: g\nprocess_results: !function no_such_mod_q.fn\n")
    found = {name: (line, reason) for name, line, reason in _reasons(tmp_path)}
    assert set(found) == {"e.yaml", "g.yaml"}
    assert found["e.yaml"] == (2, "!function utils.absent: utils.py defines no 'absent'")
    assert "cannot be imported" in found["g.yaml"][1]


def test_duplicate_task_name(tmp_path):
    _write(tmp_path, "h1.yaml", "task: same\n")
    _write(tmp_path, "h2.yaml", "task: same\n")
    [(name, _, reason)] = _reasons(tmp_path)
    assert name == "h2.yaml" and "already defined in" in reason


def test_include_chain_is_merged_before_checking(tmp_path):
    _write(tmp_path, "_template_yaml", "output_type: multiple_choice\nmetadata:\n  version: 1\n")
    _write(tmp_path, "i.yaml", "include: _template_yaml\ntask: i\n")
    assert _reasons(tmp_path) == []


def test_broken_file_in_a_plugin_is_reported_by_the_cli(tmp_path):
    env = make_plugin_on_path(
        tmp_path, "broken_demo_plugin", {"broken.yaml": "task: broken\n  bad indent: [\n"}
    )
    result = run_cli("tasks", "--check", env=env)
    assert result.returncode == 2
    assert "broken_demo_plugin_tasks/broken.yaml:2: invalid YAML" in result.stderr
    # without --check the listing still works and still reports the file
    result = run_cli("tasks", env=env)
    assert result.returncode == 0 and "broken.yaml" in result.stderr


def test_tasks_command_lists_bundled_tasks_with_their_plugin():
    result = run_cli("tasks")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert ["ecom_icl_pdc", "task", "ecom_tasks"] in rows
    assert run_cli("tasks", "--check").returncode == 0


def test_task_yaml_naming_the_old_load_task_path_still_resolves(tmp_path):
    # Task files copied from before the task side became a package name
    # ecomharness.taskdata.load_task; the check must accept it and it must be the same loader.
    from ecomharness.taskdata import load_task as old_name
    from ecomharness.tasks.data import load_task

    assert old_name is load_task
    _write(tmp_path, "old.yaml", "task: old_style\ncustom_dataset: !function ecomharness.taskdata.load_task\n"
                                 "output_type: generate_until\ndoc_to_text: '{{text}}'\ndoc_to_target: '{{target_text}}'\n")
    _write(tmp_path, "typo.yaml", "task: typo_style\ncustom_dataset: !function ecomharness.taskdata.load_taks\n"
                                  "output_type: generate_until\ndoc_to_text: '{{text}}'\ndoc_to_target: '{{target_text}}'\n")
    assert [(name, reason) for name, _, reason in _reasons(tmp_path)] == [
        ("typo.yaml", "!function ecomharness.taskdata.load_taks: module 'ecomharness.taskdata' has no attribute 'load_taks'")]
