"""`ecomharness eval` passes every `lm_eval run` flag through and adds plugin tasks."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import BIN, run_cli


def _lm_eval_run_flags() -> set[str]:
    help_text = subprocess.run(
        [str(BIN / "lm_eval"), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", help_text))


def test_every_lm_eval_run_flag_is_accepted():
    from ecomharness.cli.eval import lm_eval_parser

    ours = set(lm_eval_parser()._option_string_actions)
    flags = _lm_eval_run_flags()
    assert len(flags) > 30  # the help text was really parsed
    assert flags <= ours, f"not accepted: {sorted(flags - ours)}"


def test_our_tasks_do_not_index_lm_eval_builtins():
    from ecomharness.tasks.index import build_task_manager

    tm = build_task_manager(["ecom_icl_pdc"])
    assert "ecom_icl_pdc" in tm.all_tasks
    assert "hellaswag" not in tm.all_tasks
    assert len(tm.all_tasks) < 500


def test_a_builtin_lm_eval_task_still_resolves():
    from ecomharness.tasks.index import build_task_manager

    tm = build_task_manager(["ecom_icl_pdc", "hellaswag"])
    assert {"ecom_icl_pdc", "hellaswag"} <= set(tm.all_tasks)


def test_unknown_task_is_a_clear_error():
    result = run_cli("eval", "--model", "hf", "--tasks", "ecom_icl_pcd")
    assert result.returncode == 2
    assert "not a registered task: 'ecom_icl_pcd' (did you mean ecom_icl_pdc" in result.stderr


def test_eval_runs_plugin_and_user_tasks_end_to_end(tiny_model_dir, tmp_path):
    user_tasks = tmp_path / "my_tasks"
    user_tasks.mkdir()
    (user_tasks / "my_loader.py").write_text(
        "import datasets\n\n"
        "def load(**kw):\n"
        "    rows = [{'q': '1+1=', 'a': '2'}, {'q': '2+2=', 'a': '4'}, {'q': '3+3=', 'a': '6'}]\n"
        "    return datasets.DatasetDict({'test': datasets.Dataset.from_list(rows)})\n"
    )
    (user_tasks / "my_sum.yaml").write_text(
        "task: my_sum\ncustom_dataset: !function my_loader.load\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: ['2', '4', '6']\n"
        "doc_to_target: \"{{['2', '4', '6'].index(a)}}\"\nmetric_list:\n  - metric: acc\n"
        "metadata:\n  version: 1.0\n"
    )
    out = tmp_path / "out"
    result = run_cli(
        "eval", "--model", "hf",
        "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
        "--tasks", "ecom_icl_pdc,my_sum", "--include_path", str(user_tasks),
        "--limit", "4", "--batch_size", "4", "--output_path", str(out), "--log_samples",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [results_file] = list(out.rglob("results_*.json"))
    results = json.loads(results_file.read_text())
    assert set(results["results"]) == {"ecom_icl_pdc", "my_sum"}
    for task in ("ecom_icl_pdc", "my_sum"):
        acc = results["results"][task]["acc,none"]
        assert 0.0 <= acc <= 1.0
    assert results["n-samples"]["ecom_icl_pdc"]["effective"] == 4
    assert "ecom_tasks" in {p["name"] for p in results["ecomharness"]["plugins"]}
    assert list(out.rglob("samples_ecom_icl_pdc_*.jsonl"))
    assert "ecom_icl_pdc" in result.stdout  # lm-eval's table is printed


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_eval_help_is_lm_evals_flag_list(flag):
    result = run_cli("eval", flag)
    assert result.returncode == 0
    assert "ecomharness eval" in result.stdout and "--include_path" in result.stdout


def test_two_evaluators_in_one_process_stamp_their_own_data_sources(offline_task_data):
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings
    from ecomharness.evaluation.ledger import ledger_record

    small = CheckpointEvaluator(EvalSettings(tasks=("ecom_icl_pdc",), metadata={"max_docs": 5}))
    large = CheckpointEvaluator(EvalSettings(tasks=("ecom_icl_pdc",), metadata={"max_docs": 12}))
    results = {"results": {"ecom_icl_pdc": {"acc,none": 0.5}}}
    first = ledger_record("checkpoint-1", 1, small.settings, results=results, data_sources=small.data_sources)
    second = ledger_record("checkpoint-1", 1, large.settings, results=results, data_sources=large.data_sources)
    # the second evaluator was built last, so the process-wide record now says 12
    assert first["data_sources"]["ecom_icl_pdc"]["documents"] == 5
    assert second["data_sources"]["ecom_icl_pdc"]["documents"] == 12
