"""Fault injection: task YAML from --include_path goes through the same check as the
plugins' (issue 15, item 9): every error names its file and line, nothing crashes."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # each runs the real command (lm-eval import: seconds)


def _task(directory, name, text_template, extra=""):
    data = directory / f"{name}.jsonl"
    data.write_text(json.dumps({"text": "hello", "label": "a"}) + "\n")
    (directory / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        f"test_split: test\noutput_type: generate_until\ndoc_to_text: {json.dumps(text_template)}\n"
        f"doc_to_target: label\nmetric_list:\n  - metric: exact_match\n{extra}", encoding="utf-8")


def _eval(tmp_path, task):
    return run_cli("eval", "--model", "ecom-oracle", "--tasks", task, "--include_path", str(tmp_path / "mine"),
                   "--output_path", str(tmp_path / "out"), env={"ECOMHARNESS_CACHE": str(tmp_path / "cache")})


@pytest.fixture
def mine(tmp_path):
    (tmp_path / "mine").mkdir()
    return tmp_path / "mine"


def test_broken_yaml_in_include_path_is_named(tmp_path, mine):
    (mine / "broken.yaml").write_text("task: mytask\n  bad indent: [\n")
    result = _eval(tmp_path, "mytask")
    assert result.returncode == 2
    assert "broken.yaml:2: invalid YAML" in result.stderr and "Traceback" not in result.stderr
    check = run_cli("tasks", "--check", "--include_path", str(mine))
    assert check.returncode == 2 and "broken.yaml:2" in check.stderr


def test_jinja_syntax_error_is_named_with_its_line(tmp_path, mine):
    _task(mine, "jinja_bad", "Q: {{ text ")
    check = run_cli("tasks", "--check", "--include_path", str(mine))
    assert check.returncode == 2
    assert "jinja_bad.yaml:8: doc_to_text: Jinja syntax error" in check.stderr
    assert _eval(tmp_path, "jinja_bad").returncode == 2


def test_undefined_variable_is_found_by_rendering(tmp_path, mine):
    _task(mine, "undefined_var", "Q: {{ no_such_field }}")
    check = run_cli("tasks", "--check", "--include_path", str(mine))
    assert check.returncode == 2
    assert "undefined_var.yaml:8: task undefined_var cannot be built: UndefinedError" in check.stderr
    result = _eval(tmp_path, "undefined_var")
    assert result.returncode == 2 and "'no_such_field' is undefined" in result.stderr
    assert "Traceback" not in result.stderr


def test_group_naming_a_missing_task(tmp_path, mine):
    _task(mine, "real_one", "Q: {{ text }}")
    (mine / "group.yaml").write_text("group: my_group\ntask:\n  - real_one\n  - not_a_task\n")
    check = run_cli("tasks", "--check", "--include_path", str(mine))
    assert check.returncode == 2 and "group.yaml:2: group 'my_group' names 'not_a_task'" in check.stderr
    result = _eval(tmp_path, "my_group")
    assert result.returncode == 2 and "names 'not_a_task'" in result.stderr
