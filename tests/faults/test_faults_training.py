"""Fault injection for training, resume and ``watch``: SIGKILL at controlled points
(tests/faults/killpoints), then a re-run; the ledger and checkpoint list are asserted
exactly. Tiny model, no DeepSpeed, one small task, so each run takes seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ecomharness.evaluation.ledger import read_ledger
from tests.conftest import BIN, REPO, run_cli

pytestmark = pytest.mark.slow
RECIPE = REPO / "train" / "recipes" / "tiny_cpu.yaml"
KILLPOINTS = Path(__file__).parent / "killpoints"


def _args(built: Path, run_dir: Path, *extra: str) -> list[str]:
    args = ["train", str(RECIPE)]
    for item in (f"data.path={built / 'data'}", f"tokenizer={built / 'tok'}", f"run_dir={run_dir}",
                 "deepspeed=null", "eval.tasks=[ecom_icl_pdc]", "eval.limit=2", *extra):
        args += ["--set", item]
    return args


def train(built, run_dir, *extra, kill: str | None = None):
    """Run `ecomharness train`; with ``kill``, expect it to die by SIGKILL at that point."""
    env = {**os.environ}
    if kill:
        env["ECOMHARNESS_TEST_KILL"] = kill
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(KILLPOINTS), env.get("PYTHONPATH")]))
    result = subprocess.run([str(BIN / "ecomharness"), *_args(built, run_dir, *extra)], cwd=run_dir.parent,
                            env=env, capture_output=True, text=True, timeout=900)
    if kill:
        assert result.returncode == -9, (result.returncode, result.stderr[-3000:])
    else:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def ledger(run_dir):
    return [(r["checkpoint"], r["status"]) for r in read_ledger(run_dir / "eval" / "ledger.jsonl")]


def checkpoints(run_dir):
    return sorted((p.name for p in run_dir.glob("*checkpoint-*")), key=lambda n: (n.startswith("in"), len(n), n))


def test_kill_mid_save_then_resume(built_cpt_data, tmp_path):
    run_dir = tmp_path / "run"
    train(built_cpt_data, run_dir, kill="mid_save:20")
    assert not (run_dir / "checkpoint-20" / "trainer_state.json").exists()
    result = train(built_cpt_data, run_dir)
    assert "checkpoint-20 has no trainer_state.json" in result.stdout + result.stderr
    assert checkpoints(run_dir) == ["checkpoint-10", "checkpoint-20", "checkpoint-30", "incomplete-checkpoint-20"]
    assert ledger(run_dir) == [("init", "ok"), ("checkpoint-10", "ok"), ("checkpoint-20", "ok"), ("checkpoint-30", "ok")]


def test_kill_during_the_final_evaluation_then_rerun_twice(built_cpt_data, tmp_path):
    run_dir = tmp_path / "run"
    train(built_cpt_data, run_dir, "eval.gate=default", kill="mid_eval:checkpoint-30")
    assert ledger(run_dir)[-1] == ("checkpoint-20", "ok") and not (run_dir / "train_done.json").exists()
    train(built_cpt_data, run_dir, "eval.gate=default")
    expected = [("init", "ok"), ("checkpoint-10", "ok"), ("checkpoint-20", "ok"), ("checkpoint-30", "ok")]
    assert ledger(run_dir) == expected
    assert checkpoints(run_dir) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    caught_up = read_ledger(run_dir / "eval" / "ledger.jsonl")[-1]
    in_loop = read_ledger(run_dir / "eval" / "ledger.jsonl")[-2]
    assert caught_up["epoch"] is not None and "gate" in caught_up  # the same record as in the loop
    assert set(caught_up) == set(in_loop)
    done = (run_dir / "train_done.json").read_text()
    assert json.loads(done)["global_step"] == 30
    # a finished run re-run: no training, nothing new, the done marker untouched
    result = train(built_cpt_data, run_dir, "eval.gate=default")
    assert "already reached its last step" in result.stdout
    assert ledger(run_dir) == expected and checkpoints(run_dir) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    assert (run_dir / "train_done.json").read_text() == done


def test_every_n_saves_and_the_final_checkpoint_survive_a_resume(built_cpt_data, tmp_path):
    run_dir = tmp_path / "run"
    steps = ["training.max_steps=28", "training.save_steps=5", "eval.every_n_saves=2"]
    train(built_cpt_data, run_dir, *steps, kill="mid_save:15")
    train(built_cpt_data, run_dir, *steps)
    # saves at 5..25 and the final 28: the 1st, 3rd and 5th save, and always the last
    names = [name for name, status in ledger(run_dir)]
    assert names == ["init", "checkpoint-5", "checkpoint-15", "checkpoint-25", "checkpoint-28"]


def test_a_moved_run_directory_resumes(built_cpt_data, tmp_path):
    run_dir = tmp_path / "run"
    train(built_cpt_data, run_dir, kill="mid_save:20")
    moved = tmp_path / "elsewhere"
    shutil.move(str(run_dir), str(moved))
    result = train(built_cpt_data, moved)
    assert "the run moved from" in result.stdout
    assert [n for n, _ in ledger(moved)] == ["init", "checkpoint-10", "checkpoint-20", "checkpoint-30"]


def test_training_refuses_data_built_with_another_tokenizer(built_cpt_data, tmp_path):
    from ecomharness.demo.tiny import train_tokenizer

    train_tokenizer(["another vocabulary entirely"] * 50, vocab_size=300, out_dir=tmp_path / "other_tok")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_cli(*_args(built_cpt_data, run_dir, f"tokenizer={tmp_path / 'other_tok'}"), cwd=tmp_path)
    assert result.returncode == 2 and "was built with another tokenizer" in result.stderr


def test_watch_reports_failures_once_and_two_watchers_record_each_checkpoint_once(built_cpt_data, tmp_path):
    run_dir = tmp_path / "run"
    train(built_cpt_data, run_dir, "eval.mode=async", "training.max_steps=20")
    weights = next((run_dir / "checkpoint-20").glob("model.safetensors"))
    saved = weights.read_bytes()
    weights.write_bytes(b"not a model")
    env = {"PYTHONWARNINGS": "ignore"}
    two = [subprocess.Popen([str(BIN / "ecomharness"), "watch", str(run_dir), "--once"], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = [p.wait(timeout=600) for p in two]
    assert sorted(codes) == [3, 3] or sorted(codes) == [0, 3], codes  # the second may find nothing left to try
    assert ledger(run_dir) == [("checkpoint-10", "ok"), ("checkpoint-20", "failed")]
    again = run_cli("watch", str(run_dir), "--once", env=env)
    assert again.returncode == 3 and "1 evaluation(s) failed" in again.stderr
    assert ledger(run_dir) == [("checkpoint-10", "ok"), ("checkpoint-20", "failed")]  # not appended twice
    weights.write_bytes(saved)
    fixed = run_cli("watch", str(run_dir), "--once", env=env)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert ledger(run_dir)[-1] == ("checkpoint-20", "ok")
    gated = run_cli("gate", "--policy", str(REPO / "train" / "gates" / "default.yaml"), "--ledger", str(run_dir),
                    "--checkpoint", "last")
    assert gated.returncode == 1  # no init record to compare with: fails closed, never a crash
