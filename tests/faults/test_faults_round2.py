"""Fault injection, round two (issue 33): bad input exits 2 naming the field, a failed
set-up does not poison its run directory, one writer per run and per build output,
settings that would be ignored are refused.

The gate-side defects are in ``test_faults_evidence.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ecomharness.cli import main
from ecomharness.errors import UserError
from tests.conftest import REPO, corpus_with_tokenizer, run_cli
from tests.faults.test_faults_evidence import _scores, side
from tests.faults.test_faults_training import _args as _train_args

RECIPE = REPO / "train" / "recipes" / "tiny_cpu.yaml"  # as test_faults_training runs it


def _hold(lock_file: Path) -> subprocess.Popen:
    """Another process holding ``lock_file`` the way a running command does."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom ecomharness.util import sole_writer\n"
            "with sole_writer(Path(sys.argv[1]), 'x'):\n    print('held', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_file)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


# --- 5: crashes on bad input become input errors naming the field -------------------------

def test_a_data_source_that_is_not_a_mapping_is_named(tmp_path, capsys):
    base = side(tmp_path / "b", _scores(1))
    payload = json.loads(Path(base).read_text())
    payload["ecomharness"]["data_sources"]["ecom_icl_tig"] = "bundled"
    Path(base).write_text(json.dumps(payload))
    policy = tmp_path / "p.yaml"
    policy.write_text("rules: [{kind: min, tasks: [ecom_icl_tig], threshold: 0}]\n")
    assert main(["gate", "--policy", str(policy), "--candidate", base]) == 2
    assert "ecomharness.data_sources.ecom_icl_tig: expected a data-source mapping" in capsys.readouterr().err


@pytest.mark.parametrize("tokenizer", ["/nonexistent/tokenizer", "some-org/not-a-real-tokenizer-xyz"])
def test_a_tokenizer_that_cannot_load_is_an_input_error(tmp_path, tokenizer):
    sources = corpus_with_tokenizer(tmp_path, n_products=5, n_general=10, seed=1, vocab_size=200)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), "tokenizer": tokenizer, "seq_len": 64,
                                      "sources": sources}))
    for extra in (["--check"], []):
        # Offline as a fresh process reads it (the hub library reads the variable when imported).
        done = run_cli("data", "build", str(recipe), *extra, env={"HF_HUB_OFFLINE": "1"})
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"tokenizer {tokenizer}" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_dir_that_cannot_be_created_is_an_input_error(built_cpt_data, tmp_path):
    done = run_cli(*_train_args(built_cpt_data, Path("/proc/ecomharness-run")))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "run_dir /proc/ecomharness-run: cannot be created" in done.stderr


def test_score_refuses_a_null_target_and_a_directory_output(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"doc": {"target": None, "text": "x"}, "prediction": "a"}) + "\n")
    assert main(["score", str(preds), "--kind", "generation"]) == 2
    assert "doc.target" in capsys.readouterr().err
    preds.write_text(json.dumps({"doc": {"target": "a b", "text": "x"}, "prediction": "a"}) + "\n")
    assert main(["score", str(preds), "--kind", "generation", "--output", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_the_oracle_on_a_task_without_target_text_exits_2(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "data.jsonl").write_text("".join(json.dumps({"q": f"question {i}", "a": f"answer {i}"}) + "\n"
                                               for i in range(4)))
    (folder / "plain_qa.yaml").write_text(
        "task: plain_qa\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'data.jsonl'}\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\nmetric_list:\n  - metric: exact_match\n"
        "metadata:\n  version: 1.0\n")
    done = run_cli("eval", "--model", "ecom-oracle", "--tasks", "plain_qa", "--include_path", str(folder),
                   "--output_path", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "has no 'target_text'" in done.stderr


# --- 6: a failed set-up does not poison its run directory ---------------------------------

@pytest.mark.slow
def test_a_train_that_failed_before_training_does_not_refuse_the_corrected_command(built_cpt_data, tmp_path):
    run_dir = tmp_path / "run"
    failed = run_cli(*_train_args(built_cpt_data, run_dir, f"data.path={tmp_path / 'nothing'}"))
    assert failed.returncode == 2, failed.stderr[-2000:]
    fixed = run_cli(*_train_args(built_cpt_data, run_dir, "training.max_steps=2", "training.save_steps=2"))
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "never started training" in fixed.stdout + fixed.stderr
    # Once a run has started, a different recipe is refused as before.
    other = run_cli(*_train_args(built_cpt_data, run_dir, "training.max_steps=4", "training.save_steps=2"))
    assert other.returncode == 2 and "a run of a different recipe" in other.stderr


# --- 7: one writer per run directory and per build output ---------------------------------

def test_a_second_build_to_the_same_output_is_refused(tmp_path, capsys):
    sources = corpus_with_tokenizer(tmp_path, n_products=5, n_general=10, seed=1, vocab_size=200)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), "tokenizer": str(tmp_path / "tok"),
                                      "seq_len": 64, "sources": sources}))
    holder = _hold(tmp_path / ".out.lock")
    try:
        assert main(["data", "build", str(recipe)]) == 2
        assert f"the build output {tmp_path / 'out'} is being written by process {holder.pid}" \
            in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The killed holder left nothing locked.
    assert main(["data", "build", str(recipe)]) == 0
    assert (tmp_path / "out" / "stats.json").is_file()


@pytest.mark.slow
def test_a_second_train_on_the_same_run_directory_is_refused(built_cpt_data, tmp_path):
    run_dir = tmp_path / "run"
    holder = _hold(run_dir / ".train.lock")
    try:
        done = run_cli(*_train_args(built_cpt_data, run_dir))
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"run directory {run_dir} is being written by process {holder.pid}" in done.stderr
        assert not (run_dir / "recipe.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_killed_lock_holder_leaves_nothing_locked(tmp_path):
    from ecomharness.util import sole_writer

    holder = _hold(tmp_path / "x.lock")
    with pytest.raises(UserError, match="is being written by process"):
        with sole_writer(tmp_path / "x.lock", "x"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with sole_writer(tmp_path / "x.lock", "x"):
        assert f"process {os.getpid()}" in (tmp_path / "x.lock").read_text()


# --- 9: ECInstruct ranking labels of the wrong length -------------------------------------

def test_esci_label_lists_shorter_than_the_candidates_are_refused(tmp_path):
    data = pytest.importorskip("ecomharness_ecinstruct.data")
    records = json.loads((Path(data.SAMPLE) / "dataset.json").read_text(encoding="utf-8"))
    ranking = [r for r in records if r["task"] == "Query_Product_Ranking" and r["setting"] == "IND_Diverse_Instruction"
               and r.get("split", "test") == "test"]
    labels = [["E"] * len(json.loads(r["options"])) for r in ranking]
    labels[2] = labels[2][:-1]
    (tmp_path / "label.json").write_text(json.dumps(labels))
    with pytest.raises(UserError, match=r"list 3 has \d label\(s\), but test record 3 ranks \d candidate"):
        data.load(ecinstruct={"task": "qpr", "setting": "ind"}, ecinstruct_path=str(Path(data.SAMPLE) / "dataset.json"),
                  ecinstruct_qpr_labels=str(tmp_path / "label.json"))
    labels[2] = labels[2] + ["E"]
    (tmp_path / "label.json").write_text(json.dumps(labels))
    data.load(ecinstruct={"task": "qpr", "setting": "ind"}, ecinstruct_path=str(Path(data.SAMPLE) / "dataset.json"),
              ecinstruct_qpr_labels=str(tmp_path / "label.json"))


# --- 10: evaluation-profile settings that would be ignored or fail later ------------------

@pytest.mark.parametrize("samples, message", [
    ({"ecom_icl_tig": [0]}, "'ecom_icl_tig' is not a task of this profile"),
    ({"ecom_icl_pdc_rc": [0, 9999]}, "9999 is not a document index of ecom_icl_pdc_rc"),
])
def test_eval_samples_outside_the_profile_or_its_documents_are_refused(offline_task_data, samples, message):
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings

    with pytest.raises(UserError, match=message):
        CheckpointEvaluator(EvalSettings(tasks=("ecom_icl_pdc_rc",), samples=samples))


@pytest.mark.slow
def test_train_check_says_when_held_out_tasks_read_the_bundled_sample(built_cpt_data, tmp_path):
    done = run_cli("train", str(RECIPE), "--check", "--set", f"data.path={built_cpt_data / 'data'}",
                   "--set", f"tokenizer={built_cpt_data / 'tok'}", "--set", f"run_dir={tmp_path / 'run'}",
                   "--set", "eval.tasks=[heldout_bpb_domain]")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNING: 1 task(s) will read the sample bundled with ecomharness" in done.stdout, done.stdout
    assert "no held-out slice was found" in done.stdout
    assert not (tmp_path / "run").exists()


# --- 4: no silent wait on a Ray address where nothing listens ------------------------------

def test_a_ray_address_where_nothing_listens_fails_at_once(tmp_path, capsys):
    import socket

    pytest.importorskip("ray")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sources = corpus_with_tokenizer(tmp_path, n_products=5, n_general=10, seed=1, vocab_size=200)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), "tokenizer": str(tmp_path / "tok"),
                                      "seq_len": 64, "sources": sources}))
    start = time.monotonic()
    assert main(["data", "build", str(recipe), "--engine", "ray", "--address", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - start < 60
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in capsys.readouterr().err


# --- issue 32, item 5: the all-bad-records error says why ----------------------------------

def test_a_file_whose_every_record_is_bad_names_the_commonest_reason(tmp_path):
    from ecomharness.formats.common import ReadResult, RecordError
    from ecomharness.tasks.data import task_documents

    bad = [RecordError(tmp_path / "t.jsonl", i, "label", "must be text") for i in (1, 2, 4)]
    bad.append(RecordError(tmp_path / "t.jsonl", 3, "text", "is missing"))
    with pytest.raises(UserError, match=r"all 4 record\(s\) were skipped as bad, the commonest reason: "
                                        r"field 'label' must be text \(3x\) \(first at .*t.jsonl:1\)"):
        task_documents("t", "explicit", ReadResult([], bad, str(tmp_path / "t.jsonl"), "f"), None)


# --- issue 32, item 4: an overflowing perplexity does not take the other tasks down --------

@pytest.mark.slow
def test_word_perplexity_that_overflows_is_inf_and_the_other_tasks_are_written(tiny_model_dir, tmp_path):
    """A weak model's word perplexity on Chinese text (a "word" is a whole sentence)
    overflows a float: lm-eval's weighted_perplexity raised, and the run exited 3 with no
    result for any task. Now it is +inf with a warning, and every task is written."""
    done = run_cli("eval", "--model", "hf", "--model_args", f"pretrained={tiny_model_dir}", "--device", "cpu",
                   "--tasks", "heldout_bpb_general_zh,ecom_icl_pdc_rc", "--limit", "8",
                   "--output_path", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())["results"]
    assert results["heldout_bpb_general_zh"]["word_perplexity,none"] == float("inf")
    assert 0 < results["heldout_bpb_general_zh"]["bits_per_byte,none"] < 100
    assert 0 <= results["ecom_icl_pdc_rc"]["acc,none"] <= 1
    assert "overflows a float: reported as +inf" in done.stdout + done.stderr
