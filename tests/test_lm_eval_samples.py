"""The paired gate on plain lm-eval output: evidence from `lm_eval --log_samples` files.

Two tiny models are evaluated by the plain `lm_eval` command (no ecomharness evaluator):
bundled tasks through `ecomharness tasks-path`, and a user task from an `--include_path`
folder that knows nothing of ecomharness. `ecomharness gate` and `compare` then test
them on paired evidence read from lm-eval's own sample logs.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, run_cli

pytestmark = pytest.mark.slow

BUNDLED = "ecom_icl_pdc,ecom_icl_tig,ecom_icl_rc"
LIMIT = "12"

USER_TASK = """\
task: toy_sum
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metadata:
  version: 1.0
"""

POLICY = """\
rules:
  - name: kept
    kind: max_drop
    tasks: [ecom_icl_pdc, ecom_icl_tig, ecom_icl_rc, toy_sum]
    metric: {metric}
    threshold: 1.0
    alpha: 0.05
"""


def _lm_eval(model: Path, tasks: str, include: str, out: Path, limit: str | None) -> subprocess.Popen:
    args = [str(BIN / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model}", "--device", "cpu",
            "--tasks", tasks, "--include_path", include, "--log_samples", "--output_path", str(out)]
    if limit:
        args += ["--limit", limit]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory) -> dict[str, Path]:
    """``{name: output folder}`` of plain lm-eval runs: bundled tasks and a user task, for
    two tiny models with different weights."""
    from ecomharness.demo.run import task_sample_texts
    from ecomharness.demo.tiny import save_tiny_model

    root = tmp_path_factory.mktemp("plain_lm_eval")
    models = [save_tiny_model(root / f"model{seed}", task_sample_texts(), vocab_size=800, hidden_size=32,
                              n_layer=2, seed=seed) for seed in (0, 1)]
    user = root / "user_tasks"
    user.mkdir()
    rows = [{"question": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 2)],
             "label": 0} for a, b in [(i % 9 + 1, (i * 7) % 9 + 1) for i in range(24)]]
    (user / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (user / "toy_sum.yaml").write_text(USER_TASK.format(data=user / "data.jsonl"), encoding="utf-8")
    include = subprocess.run([str(BIN / "ecomharness"), "tasks-path"], capture_output=True, text=True,
                             check=True).stdout.strip()
    runs = {}
    jobs = []
    for i, model in enumerate(models):
        runs[f"bundled{i}"], runs[f"user{i}"] = root / f"bundled{i}", root / f"user{i}"
        jobs.append(_lm_eval(model, BUNDLED, include, runs[f"bundled{i}"], LIMIT))
        jobs.append(_lm_eval(model, "toy_sum", str(user), runs[f"user{i}"], None))
    for job in jobs:
        output, _ = job.communicate(timeout=600)
        assert job.returncode == 0, output[-3000:]
    return runs


def _results(folder: Path) -> Path:
    return next(folder.rglob("results_*.json"))


def _copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def test_gate_tests_plain_lm_eval_runs_on_paired_evidence(plain_runs, tmp_path):
    for metric, pairs in (("acc", [("bundled", ["ecom_icl_rc", "ecom_icl_pdc"]), ("user", ["toy_sum"])]),
                          ("score", [("bundled", ["ecom_icl_tig", "ecom_icl_pdc"])])):
        policy = tmp_path / f"{metric}.yaml"
        policy.write_text(POLICY.format(metric=metric), encoding="utf-8")
        for kind, tasks in pairs:
            out = tmp_path / f"{kind}-{metric}.json"
            done = run_cli("gate", "--policy", str(policy), "--candidate", str(plain_runs[f"{kind}1"]),
                           "--baseline", str(plain_runs[f"{kind}0"]), "--json", str(out))
            verdict = json.loads(out.read_text())
            checks = {c["task"]: c for c in verdict["checks"]}
            for task in tasks:
                reason = checks[task]["reason"]
                assert checks[task]["passed"], reason
                assert "mcnemar" in reason or "paired-bootstrap" in reason, reason
                n = 12 * (3 if task == "ecom_icl_rc" else 1) if kind == "bundled" else 24
                assert f"n={n}" in reason, reason
                assert "identity taken from lm-eval's records" in reason, reason
                assert "unknown_source" not in reason
            # the rule's other tasks are missing from this run: they fail closed as before
            assert done.returncode == 1, done.stdout + done.stderr


def test_compare_reads_plain_lm_eval_samples(plain_runs):
    done = run_cli("compare", str(plain_runs["bundled1"]), str(plain_runs["bundled0"]), "--metrics", "acc,score")
    assert done.returncode == 0, done.stderr
    assert "stratified-paired-bootstrap | 36" in done.stdout, done.stdout
    assert "| ecom_icl_tig | score |" in done.stdout and "none:" not in done.stdout, done.stdout


def test_recomputed_means_equal_lm_eval_reported_values(plain_runs):
    from ecomharness.evaluation.lm_eval_samples import read_samples

    checked = 0
    for name, folder in plain_runs.items():
        file = _results(folder)
        results = json.loads(file.read_text(encoding="utf-8"))
        table = read_samples(results, file)
        assert set(table["tasks"]) == set(results["n-samples"]), name
        for task, entry in table["tasks"].items():
            for metric, values in entry["metrics"].items():
                if entry["aggregation"][metric] != "mean":
                    continue
                reported = results["results"][task][f"{metric},none"]
                assert math.isclose(sum(values) / len(values), reported, rel_tol=0, abs_tol=1e-12), (task, metric)
                checked += 1
    # every mean metric of every task: 4 bundled leaves and the user task, on two models
    assert checked >= 2 * (2 + 2 + 2 + 5 + 4) + 2 * 2


def test_missing_samples_fail_closed(plain_runs, tmp_path):
    baseline = _copy(plain_runs["user0"], tmp_path / "user0")
    for path in baseline.rglob("samples_*.jsonl"):
        path.unlink()
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.format(metric="acc").replace("ecom_icl_pdc, ecom_icl_tig, ecom_icl_rc, ", ""))
    done = run_cli("gate", "--policy", str(policy), "--candidate", str(plain_runs["user1"]), "--baseline",
                   str(baseline))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[fail-closed: unknown_source]" in done.stdout
    assert "--log_samples" in done.stdout


def _edit_samples(folder: Path, task: str, edit) -> Path:
    path = next(folder.rglob(f"samples_{task}_*.jsonl"))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in edit(lines)), encoding="utf-8")
    return path


def test_samples_that_do_not_match_their_results_are_input_errors(plain_runs, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.format(metric="acc").replace("ecom_icl_pdc, ecom_icl_tig, ecom_icl_rc, ", ""))

    def flip(lines):
        lines[0]["acc"] = 1.0 - lines[0]["acc"]
        return lines

    edited = _copy(plain_runs["user0"], tmp_path / "flipped")
    path = _edit_samples(edited, "toy_sum", flip)
    done = run_cli("gate", "--policy", str(policy), "--candidate", str(plain_runs["user1"]), "--baseline", str(edited))
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(path.name) in done.stderr and "recomputed from the per-document values" in done.stderr, done.stderr

    short = _copy(plain_runs["user0"], tmp_path / "short")
    _edit_samples(short, "toy_sum", lambda lines: lines[1:])
    done = run_cli("gate", "--policy", str(policy), "--candidate", str(plain_runs["user1"]), "--baseline", str(short))
    assert done.returncode == 2 and "n-samples 24" in done.stderr, done.stdout + done.stderr


def test_a_changed_prompt_is_a_data_mismatch(plain_runs, tmp_path):
    """The same documents given another prompt (a template edited without a version bump):
    lm-eval's task hash differs, and the reason names the document."""
    import hashlib

    edited = _copy(plain_runs["user0"], tmp_path / "prompt")

    def reprompt(lines):
        lines[3]["prompt_hash"] = hashlib.sha256(b"another prompt").hexdigest()
        return lines

    path = _edit_samples(edited, "toy_sum", reprompt)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    file = _results(edited)
    results = json.loads(file.read_text(encoding="utf-8"))
    results["task_hashes"]["toy_sum"] = hashlib.sha256(
        "".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in lines).encode()).hexdigest()
    file.write_text(json.dumps(results), encoding="utf-8")
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.format(metric="acc").replace("ecom_icl_pdc, ecom_icl_tig, ecom_icl_rc, ", ""))
    done = run_cli("gate", "--policy", str(policy), "--candidate", str(plain_runs["user1"]), "--baseline", str(edited))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[fail-closed: data_mismatch]" in done.stdout
    assert "(doc_id 3) was given a different prompt" in done.stdout, done.stdout


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace('"doc_hash"', '"doc_hsh"', 1), "not an lm-eval sample"),
    (lambda text: text[: len(text) // 2], "invalid JSON"),
    (lambda text: text.replace('"metrics": ["acc", "acc_norm"]', '"metrics": ["acc", "acc_norm", "f1"]', 1),
     "metric 'f1' is listed but has no value"),
])
def test_malformed_sample_lines_are_named(plain_runs, tmp_path, edit, message):
    broken = _copy(plain_runs["user0"], tmp_path / "broken")
    path = next(broken.rglob("samples_toy_sum_*.jsonl"))
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    done = run_cli("compare", str(plain_runs["user1"]), str(broken), "--metrics", "acc")
    assert done.returncode == 2, done.stdout + done.stderr
    assert path.name in done.stderr and message in done.stderr, done.stderr


def test_a_results_file_with_odd_fields_is_not_a_crash(plain_runs, tmp_path):
    odd = _copy(plain_runs["user0"], tmp_path / "odd")
    file = _results(odd)
    results = json.loads(file.read_text(encoding="utf-8"))
    results.update({"task_hashes": ["x"], "configs": "y", "config": None, "n-samples": {"toy_sum": 3}})
    file.write_text(json.dumps(results), encoding="utf-8")
    done = run_cli("compare", str(plain_runs["user1"]), str(odd), "--metrics", "acc")
    assert done.returncode in (0, 2), done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
