"""Training with DeepSpeed ZeRO-2 + CPU offload, every checkpoint evaluated (CPU, tiny)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ecomharness.errors import UserError
from ecomharness.evaluation.ledger import append_record, read_ledger
from ecomharness.train.recipe import load_recipe, parse_recipe
from tests.conftest import BIN, REPO, run_cli

RECIPE = REPO / "train" / "recipes" / "tiny_cpu.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(built_cpt_data):
    """A small `data build` output and its tokenizer (tests/conftest.py)."""
    return built_cpt_data


def _overrides(built: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.path={built / 'data'}", f"tokenizer={built / 'tok'}", f"run_dir={run_dir}", *extra]


def _train(built, run_dir, *extra, timeout=900):
    args = ["train", str(RECIPE)]
    for item in _overrides(built, run_dir, *extra):
        args += ["--set", item]
    result = run_cli(*args, cwd=run_dir.parent, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((run_dir / "train_done.json").read_text())


def test_recipe_validation():
    with pytest.raises(UserError, match=r"training: unknown key 'max_step' \(did you mean 'max_steps'\?\)"):
        parse_recipe({"run_dir": "r", "model": {"path": "m"}, "data": {"path": "d"}, "training": {"max_step": 3},
                      "eval": {"mode": "off"}})
    with pytest.raises(UserError, match=r"eval: unknown key 'task'"):
        parse_recipe({"run_dir": "r", "model": {"path": "m"}, "data": {"path": "d"}, "eval": {"task": ["x"]}})
    with pytest.raises(UserError, match="exactly one of 'path'"):
        parse_recipe({"run_dir": "r", "model": {}, "data": {"path": "d"}, "eval": {"mode": "off"}})
    with pytest.raises(UserError, match="deepspeed: 'zero9'"):
        parse_recipe({"run_dir": "r", "model": {"path": "m"}, "data": {"path": "d"}, "deepspeed": "zero9",
                      "eval": {"mode": "off"}})
    recipe = load_recipe(RECIPE, ["training.max_steps=5", "eval.limit=2"])
    assert recipe.training["max_steps"] == 5 and recipe.eval.inline.limit == 2
    assert recipe.deepspeed.endswith("zero2_offload.json")
    assert parse_recipe(recipe.to_raw()) == recipe.__class__(**{**recipe.__dict__, "source_file": None})


def test_ledger_survives_a_torn_line(tmp_path):
    path = tmp_path / "eval" / "ledger.jsonl"
    append_record(path, {"checkpoint": "a", "step": 1, "status": "ok", "metrics": {}})
    with path.open("a") as fh:
        fh.write('{"checkpoint": "b", "sta')  # killed mid-write
    append_record(path, {"checkpoint": "c", "step": 3, "status": "ok", "metrics": {}})
    assert [r["checkpoint"] for r in read_ledger(path)] == ["a", "c"]


def test_zero2_offload_run_evaluates_every_checkpoint_and_reports(built, tmp_path):
    run_dir = tmp_path / "run"
    summary = _train(built, run_dir)
    assert summary["global_step"] == 30
    records = read_ledger(run_dir / "eval" / "ledger.jsonl")
    assert [r["checkpoint"] for r in records] == ["init", "checkpoint-10", "checkpoint-20", "checkpoint-30"]
    for record in records:
        assert record["status"] == "ok"
        assert {"ecom_icl", "general_icl", "ecom_icl_pdc"} <= set(record["metrics"])
        assert "stderr" in record["metrics"]["ecom_icl_pdc"]["acc"]
        assert record["data_sources"]["ecom_icl_pdc"]["origin"] == "bundled"
        assert record["settings"]["limit"] == 4 and record["eval_seconds"] > 0
    assert records[2]["tokens_seen"] == 20 * 8 * 64
    # metrics reached the Trainer's log history as eval/<task>/<metric>
    state = json.loads((run_dir / "checkpoint-30" / "trainer_state.json").read_text())
    assert any("eval/ecom_icl/score" in h for h in state["log_history"])
    result = run_cli("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert (run_dir / "report" / "curves.png").stat().st_size > 10_000
    table = (run_dir / "report" / "report.md").read_text()
    assert "| checkpoint-20 | 20 |" in table
    # async watcher on the same run: everything is already in the ledger
    watch = run_cli("watch", str(run_dir), "--once")
    assert watch.returncode == 0 and "evaluated 0 checkpoint(s)" in watch.stdout


def test_evaluation_does_not_change_training_losses(built, tmp_path):
    with_eval = _train(built, tmp_path / "with_eval")
    without = _train(built, tmp_path / "without", "eval.mode=off")
    assert len(with_eval["losses"]) == 30
    # Equal to float noise: once in a full-suite run the losses differed at step 8 by
    # 5e-7 (8e-8 relative), as kernels on differently aligned memory can; a disturbed
    # data order or RNG stream moves them by orders of magnitude more.
    assert with_eval["losses"] == pytest.approx(without["losses"], rel=1e-6, abs=0)


def test_async_evaluation_with_watch(built, tmp_path):
    run_dir = tmp_path / "async"
    _train(built, run_dir, "eval.mode=async", "training.max_steps=20")
    assert not (run_dir / "eval" / "ledger.jsonl").exists()
    result = run_cli("watch", str(run_dir), "--poll", "0.5", "--timeout", "300")
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_ledger(run_dir / "eval" / "ledger.jsonl")
    assert [r["checkpoint"] for r in records] == ["checkpoint-10", "checkpoint-20"]
    again = run_cli("watch", str(run_dir), "--once")
    assert "evaluated 0 checkpoint(s)" in again.stdout


def test_kill_and_resume_loses_and_duplicates_nothing(built, tmp_path):
    run_dir = tmp_path / "resume"
    args = [str(BIN / "ecomharness"), "train", str(RECIPE)]
    for item in _overrides(built, run_dir, "training.max_steps=60", "training.save_steps=5"):
        args += ["--set", item]
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    ledger = run_dir / "eval" / "ledger.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(read_ledger(ledger)) < 3:
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run_dir / "train_done.json").exists()
    summary = _train(built, run_dir, "training.max_steps=60", "training.save_steps=5")
    assert summary["global_step"] == 60
    checkpoints = [r["checkpoint"] for r in read_ledger(ledger) if r["status"] == "ok"]
    expected = ["init"] + [f"checkpoint-{s}" for s in range(5, 61, 5)]
    assert sorted(checkpoints, key=expected.index) == expected  # each exactly once
    assert len(checkpoints) == len(set(checkpoints))


def test_two_processes_with_the_deepspeed_launcher(built, tmp_path):
    if shutil.which("deepspeed", path=str(BIN)) is None:
        pytest.skip("deepspeed launcher not installed")
    run_dir = tmp_path / "ds2"
    args = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", "29631", str(BIN / "ecomharness"),
            "train", str(RECIPE)]
    overrides = _overrides(built, run_dir, "training.max_steps=20", "training.per_device_train_batch_size=4",
                           "eval.batch_size=1")
    for item in overrides:
        args += ["--set", item]
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    records = read_ledger(run_dir / "eval" / "ledger.jsonl")
    # rank 0 alone records: one record per checkpoint, no duplicates
    assert [r["checkpoint"] for r in records] == ["init", "checkpoint-10", "checkpoint-20"]
    assert records[-1]["tokens_seen"] == 20 * 4 * 2 * 64  # two processes' batches per step
    # Both ranks evaluated, each a shard of the documents; the scores are those of one
    # process evaluating every document of the same checkpoint.
    assert all(r["eval_ranks"] == 2 for r in records)
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator
    from ecomharness.evaluation.ledger import metrics_of

    settings = load_recipe(RECIPE, overrides).eval.inline.settings()
    alone = metrics_of(CheckpointEvaluator(settings).evaluate_path(str(run_dir / "checkpoint-20")))
    assert alone.keys() == records[-1]["metrics"].keys()
    for task, metrics in alone.items():
        for metric, measure in metrics.items():
            assert records[-1]["metrics"][task][metric]["value"] == pytest.approx(measure["value"], abs=1e-12), \
                (task, metric)


@pytest.mark.parametrize("name", ["tiny_cpu", "bloom_3b_cpt", "bloom_7b1_cpt", "sft"])
def test_bundled_recipes_are_valid(name):
    recipe = load_recipe(REPO / "train" / "recipes" / f"{name}.yaml", ["data.instruction_dirs=[x]"] if name == "sft" else [])
    assert recipe.eval.inline.tasks and recipe.deepspeed.endswith("zero2_offload.json")
    assert recipe.deepspeed_config()["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_sft_masks_the_prompt_and_trains(built, tmp_path):
    from ecomharness.train.components import load_tokenizer, sft_dataset

    folders = [str(REPO / "tasks" / "_samples" / "ecominstruct" / name) for name in ("pdc", "ave")]
    recipe = load_recipe(RECIPE, [f"tokenizer={built / 'tok'}", "mode=sft", "data.path=null",
                                  f"data.instruction_dirs={json.dumps(folders)}", "data.max_length=512"])
    tokenizer = load_tokenizer(recipe)
    dataset = sft_dataset(recipe, tokenizer)
    row = dataset[0]
    response = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tokenizer.decode(response).endswith("</s>") and row["labels"][0] == -100
    assert "### Response:" in tokenizer.decode(row["input_ids"][: len(row["input_ids"]) - len(response)])
    run_dir = tmp_path / "sft"
    _train(built, run_dir, "mode=sft", "data.path=null", f"data.instruction_dirs={json.dumps(folders)}",
           "data.max_length=512", "training.max_steps=10", "eval.tasks=[ecom_sft_pdc]")
    assert [r["checkpoint"] for r in read_ledger(run_dir / "eval" / "ledger.jsonl")] == ["init", "checkpoint-10"]


def test_inline_gate_records_a_verdict_per_checkpoint(built, tmp_path):
    run_dir = tmp_path / "gated"
    policy = REPO / "train" / "gates" / "default.yaml"
    _train(built, run_dir, f"eval.gate={policy}", "training.max_steps=10", "eval.tasks=[ecom_icl_pdc,general_icl_snli]")
    records = read_ledger(run_dir / "eval" / "ledger.jsonl")
    assert "gate" not in records[0]  # init is the baseline
    verdict = records[1]["gate"]
    # the default policy names groups this run did not evaluate: it fails closed, saying so
    assert verdict["passed"] is False and any("fail-closed: missing" in f for f in verdict["failed"])


def test_lssd_under_zero2_offload_trains_and_evaluates(built, tmp_path):
    run_dir = tmp_path / "lssd"
    summary = _train(built, run_dir, "loss.lssd.enabled=true", "loss.lssd.weight=0.5", "loss.lssd.temperature=2.0",
                     "training.max_steps=20")
    plain = _train(built, tmp_path / "plain", "training.max_steps=20", "eval.mode=off")
    assert summary["global_step"] == 20 and summary["losses"] != plain["losses"]  # the KL term is in the loss
    records = read_ledger(run_dir / "eval" / "ledger.jsonl")
    assert [r["checkpoint"] for r in records] == ["init", "checkpoint-10", "checkpoint-20"]
    kept = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert kept["loss"]["lssd"]["enabled"] is True
    table = run_cli("report", "--compare", str(run_dir), str(tmp_path / "lssd"))
    assert table.returncode == 0, table.stderr
    assert "| lssd | checkpoint-20 |" in table.stdout and "gate vs init" in table.stdout
    for name in ("plain", "lssd", "mix", "lssd_mix"):
        assert load_recipe(REPO / "train" / "recipes" / f"mixcpt_{name}.yaml").lssd.enabled == ("lssd" in name)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_resume_skips_a_checkpoint_cut_off_mid_save(tmp_path, monkeypatch, rank):
    from ecomharness.train.run import _resume_point

    monkeypatch.setenv("RANK", rank)
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_text("x")
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text("{}")
    logged = []
    assert _resume_point(tmp_path, logged.append) == tmp_path / "checkpoint-5"
    if rank == "0":  # moved aside and reported, not deleted
        assert not (tmp_path / "checkpoint-10").exists()
        assert (tmp_path / "incomplete-checkpoint-10" / "model.safetensors").is_file()
        assert "checkpoint-10 has no trainer_state.json" in logged[0]
    else:  # other ranks leave the moving to rank 0
        assert (tmp_path / "checkpoint-10").is_dir() and not logged


def test_averaging_copies_of_one_checkpoint_gives_that_checkpoint(tiny_model_dir, tmp_path):
    """The weight average of N copies of one checkpoint is that checkpoint, tensor for
    tensor; checkpoints of different models are refused."""
    import torch
    from safetensors.torch import load_file

    from ecomharness.train.average import average_weights, chosen_checkpoints

    run_dir = tmp_path / "run"
    for step in (10, 20, 30):
        shutil.copytree(tiny_model_dir, run_dir / f"checkpoint-{step}")
        (run_dir / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    chosen = chosen_checkpoints(run_dir, 3)
    assert [p.name for _, p in chosen] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    manifest = average_weights([p for _, p in chosen], run_dir / "average-last-3")
    assert manifest["averaged"] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    original = {k: v for f in sorted(Path(tiny_model_dir).glob("*.safetensors")) for k, v in load_file(f).items()}
    averaged = {k: v for f in sorted((run_dir / "average-last-3").glob("*.safetensors")) for k, v in load_file(f).items()}
    assert set(averaged) == set(original)
    assert all(torch.equal(averaged[k], original[k]) for k in original)
    with pytest.raises(UserError, match="fewer than --last 4"):
        chosen_checkpoints(run_dir, 4)
    with pytest.raises(UserError, match="at least 2"):
        chosen_checkpoints(run_dir, 1)


def test_an_averaged_checkpoint_is_evaluated_recorded_and_gated(built, tmp_path):
    run_dir = tmp_path / "run"
    _train(built, run_dir, "training.max_steps=20")
    result = run_cli("average", str(run_dir), "--last", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_ledger(run_dir / "eval" / "ledger.jsonl")
    assert [r["checkpoint"] for r in records] == ["init", "checkpoint-10", "checkpoint-20", "average-last-2"]
    average = records[-1]
    assert average["status"] == "ok" and average["step"] == 20 and "ecom_icl_pdc" in average["metrics"]
    policy = tmp_path / "policy.yaml"
    rule = {"name": "kept", "kind": "max_drop", "tasks": ["ecom_icl_pdc"], "metric": "acc", "threshold": 1.0}
    policy.write_text(yaml.safe_dump({"rules": [rule]}))
    gated = run_cli("gate", "--policy", str(policy), "--ledger", str(run_dir), "--checkpoint", "average")
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "average-last-2" in gated.stdout
    # `last` is still the last trained save, not the average at the same step.
    last = run_cli("gate", "--policy", str(policy), "--ledger", str(run_dir), "--checkpoint", "last")
    assert "checkpoint-20" in last.stdout and "average-last-2" not in last.stdout
    # The same average again is already recorded; another ending elsewhere is refused.
    again = run_cli("average", str(run_dir), "--last", "2")
    assert again.returncode == 0 and "already in the ledger" in again.stdout
