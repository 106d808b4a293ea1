"""`data build --check` and `train --check`: a recipe validated without running it."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO, corpus_with_tokenizer, run_cli

pytestmark = pytest.mark.slow  # real commands (seconds each)


def test_data_build_check_validates_without_building(tmp_path):
    sources = corpus_with_tokenizer(tmp_path, n_products=20, n_general=40, seed=1, vocab_size=300)
    recipe = {"output": str(tmp_path / "out"), "tokenizer": str(tmp_path / "tok"), "seq_len": 64,
              "sources": sources}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    result = run_cli("data", "build", str(tmp_path / "r.yaml"), "--check")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the recipe is valid" in result.stdout and "template compiles" in result.stdout
    assert not (tmp_path / "out").exists()
    recipe["sources"][0]["template"] = "{{ title "
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    bad = run_cli("data", "build", str(tmp_path / "bad.yaml"), "--check")
    assert bad.returncode == 2 and "template line 1" in bad.stderr
    recipe["sources"][0]["template"] = "{{ title }}"
    recipe["sources"][0]["path"] = str(tmp_path / "nope.jsonl")
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    missing = run_cli("data", "build", str(tmp_path / "missing.yaml"), "--check")
    assert missing.returncode == 2 and "nope.jsonl: no jsonl files found" in missing.stderr


def test_train_check_validates_without_training(built_cpt_data, tmp_path):
    args = ["train", str(REPO / "train" / "recipes" / "tiny_cpu.yaml"), "--check",
            "--set", f"data.path={built_cpt_data / 'data'}", "--set", f"tokenizer={built_cpt_data / 'tok'}",
            "--set", f"run_dir={tmp_path / 'run'}"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the recipe is valid" in result.stdout and "task(s) or group(s) resolve" in result.stdout
    assert not (tmp_path / "run").exists()
    wrong_task = run_cli(*args, "--set", "eval.tasks=[ecom_icl_pcd]")
    assert wrong_task.returncode == 2 and "did you mean ecom_icl_pdc" in wrong_task.stderr
    no_data = run_cli(*args, "--set", f"data.path={tmp_path / 'nothing'}")
    assert no_data.returncode == 2 and "is not a `data build` output" in no_data.stderr
