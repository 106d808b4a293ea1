"""Ranked-choice variants of the classification tasks (issue 18, item 2): the same
documents and prompts scored by the log-likelihood of each label."""

from __future__ import annotations

import json
import subprocess

import pytest

from ecomharness.evaluation.reference_lms import OracleLM
from ecomharness.tasks.choice import gold_index
from tests.conftest import BIN, run_cli

RC_GROUPS = ("ecom_icl_rc", "general_icl_rc", "flare_rc")


def test_gold_index_folds_labels_as_the_metric_does():
    assert gold_index({"label_set": ["positive", "negative"], "target": "Negative"}) == 1
    assert gold_index({"label_set": ["是", "否"], "target": "否。"}) == 1
    assert gold_index({"label_set": ["a", "b", "c"], "target": ["c", "a"]}) == [0, 2]
    with pytest.raises(ValueError, match=r"gold label \['d'\] is not among the choices \['a', 'b'\]"):
        gold_index({"label_set": ["a", "b"], "target": "d"})


class Adversary(OracleLM):
    """Certain of every wrong choice and of nothing else: ranked choice must score 0."""

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return [(-100.0 if self._is_gold(r) else 0.0, False) for r in requests]


@pytest.mark.slow
def test_oracle_scores_1_and_an_adversary_0_on_every_ranked_choice_task(offline_task_data):
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings

    evaluator = CheckpointEvaluator(EvalSettings(tasks=RC_GROUPS, metadata={"max_docs": 20}))
    leaves = [t for t in evaluator.loaded["tasks"]]
    assert len(leaves) == 10
    for lm, expected in ((OracleLM(), 1.0), (Adversary(), 0.0)):
        results = evaluator._evaluate(lm)["results"]
        for name in [*leaves, *RC_GROUPS]:
            assert results[name]["acc,none"] == expected, (name, lm)
    # the variants score the same documents as the tasks they vary
    generative = CheckpointEvaluator(EvalSettings(tasks=("ecom_icl_pdc", "flare_fpb"), metadata={"max_docs": 20}))
    for task in ("ecom_icl_pdc", "flare_fpb"):
        assert generative.data_sources[task]["documents_hash"] == evaluator.data_sources[f"{task}_rc"]["documents_hash"]


@pytest.mark.slow
def test_ranked_choice_groups_run_on_a_tiny_model_through_both_commands(tiny_model_dir, tmp_path):
    tasks = ",".join(RC_GROUPS)
    model_args = f"pretrained={tiny_model_dir},dtype=float32"
    ours = run_cli("eval", "--model", "hf", "--model_args", model_args, "--tasks", tasks, "--limit", "3",
                   "--output_path", str(tmp_path / "ours"), cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr[-3000:]
    [results_file] = (tmp_path / "ours").rglob("results_*.json")
    results = json.loads(results_file.read_text(encoding="utf-8"))["results"]
    for group in RC_GROUPS:
        assert 0.0 <= results[group]["acc,none"] <= 1.0
    include = run_cli("tasks-path").stdout.strip()
    plain = subprocess.run(
        [str(BIN / "lm_eval"), "--model", "hf", "--model_args", model_args, "--device", "cpu", "--tasks", tasks,
         "--include_path", include, "--limit", "3", "--output_path", str(tmp_path / "plain")],
        capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert plain.returncode == 0, plain.stderr[-3000:]
    [plain_file] = (tmp_path / "plain").rglob("results_*.json")
    plain_results = json.loads(plain_file.read_text(encoding="utf-8"))["results"]
    for name, values in results.items():
        assert plain_results[name]["acc,none"] == pytest.approx(values["acc,none"]), name
