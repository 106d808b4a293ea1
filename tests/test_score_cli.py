"""`ecomharness score` re-scores saved predictions."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA, run_cli


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_lm_eval_samples_file_is_rescored_cjk_aware(tmp_path):
    # The shape lm-eval writes for a generate_until task with --log_samples.
    rows = [
        {"doc_id": 0, "doc": {"title": "x"}, "target": "红色连衣裙", "resps": [["红色连衣裙"]], "filtered_resps": ["红色连衣裙"]},
        {"doc_id": 1, "doc": {"title": "y"}, "target": "蓝色衬衫", "resps": [["蓝色"]], "filtered_resps": ["蓝色"]},
    ]
    path = _write(tmp_path / "samples_ecom_icl_tig_2026.jsonl", rows)
    out = tmp_path / "scores.json"
    result = run_cli("score", str(path), "--output", str(out))
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())[str(path)]
    assert scores["kind"] == "generation" and scores["n"] == 2
    # 1.0 and (P 1, R 2/4 -> 2/3): mean 5/6
    assert scores["metrics"]["rougeL"]["value"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["metrics"]["rougeL"]["stderr"] == pytest.approx(1 / 6)


def test_doc_prediction_file_classification_and_bad_lines(tmp_path):
    doc = {"target": "positive", "label_set": ["negative", "positive"]}
    rows = [{"doc": doc, "prediction": "Positive."}, {"doc": doc, "prediction": "maybe"}]
    path = _write(tmp_path / "preds.jsonl", rows)
    with path.open("a") as fh:
        fh.write("{not json\n")
    failed = run_cli("score", str(path))
    assert failed.returncode == 2 and "preds.jsonl:3: invalid JSON" in failed.stderr
    result = run_cli("score", str(path), "--on-error", "skip")
    assert result.returncode == 0, result.stderr
    lines = {l.split()[0]: l.split()[1] for l in result.stdout.splitlines()[1:]}
    assert lines["acc"] == "0.5000" and lines["missing"] == "0.5000"
    assert "skipped=1" in result.stdout


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
def test_real_extraction_gold_as_predictions_scores_one(tmp_path):
    from ecomharness.formats.ecominstruct import read_ecominstruct

    docs = read_ecominstruct(SHARED_DATA / "ecominstruct" / "ZH-MEPAVE-NER-attribute_value_extraction").docs
    path = _write(tmp_path / "p.jsonl", [{"doc": d, "prediction": d["target_text"]} for d in docs])
    result = run_cli("score", str(path), "--output", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "s.json").read_text())[str(path)]["metrics"]
    assert metrics["f1"]["value"] == 1.0 and metrics["precision"]["value"] == 1.0


def test_a_crash_exits_3_with_one_line_and_the_traceback_in_a_file(tmp_path):
    # A samples file whose document makes the scorer fail inside (label_set is a number).
    path = _write(tmp_path / "preds.jsonl", [{"doc": {"target": "a", "label_set": 5, "kind": "classification"},
                                              "prediction": "a"}])
    result = run_cli("score", str(path), env={"ECOMHARNESS_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 3, result.stderr
    [line] = [l for l in result.stderr.splitlines() if l.strip()]
    assert line.startswith("ecomharness score: internal error: TypeError")
    [saved] = (tmp_path / "cache" / "crashes").iterdir()
    assert "Traceback" in saved.read_text() and str(saved) in line


@pytest.mark.slow
@pytest.mark.parametrize("task, model", [("flare_fpb", "ecom-oracle"), ("flare_fiqasa", "ecom-empty"),
                                         ("flare_headlines", "ecom-oracle"), ("flare_ner", "ecom-empty")])
def test_finben_classification_is_rescored_with_finbens_own_metrics(tmp_path, task, model):
    """`score` on FLARE samples gives every metric the task reports, FinBen's and
    PIXIU's included, equal to the evaluation's own values."""
    done = run_cli("eval", "--model", model, "--tasks", task, "--log_samples", "--limit", "30",
                   "--output_path", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())["results"][task]
    samples = next((tmp_path / "out").rglob(f"samples_{task}_*.jsonl"))
    out = tmp_path / "scores.json"
    scored = run_cli("score", str(samples), "--output", str(out))
    assert scored.returncode == 0, scored.stderr[-2000:]
    report = json.loads(out.read_text())[str(samples)]
    assert report["kind_source"] == f"task {task}"
    reported = {key.split(",")[0] for key in results if key.endswith(",none") and "_stderr" not in key}
    assert reported >= {"score"} and reported <= set(report["metrics"]), reported - set(report["metrics"])
    for metric in reported:  # every metric the task defines, whoever defined it
        assert report["metrics"][metric]["value"] == pytest.approx(results[f"{metric},none"], abs=1e-12), metric
    if task in ("flare_fpb", "flare_fiqasa"):
        assert {"acc_finben", "f1_finben"} <= reported


def test_a_plugin_tasks_samples_are_rescored_by_the_tasks_own_scoring(tmp_path):
    """`score` re-scores every metric a task defines with the task's own process_results
    and aggregation, whoever wrote them: Shopping MMLU's samples by its per-question
    metrics and skill score, not as an ecomharness generation task (which its
    `process_generation` was once taken for, by name)."""
    metrics = pytest.importorskip("ecomharness_shopping_mmlu.metrics")
    task = "shopping_mmlu_concept_gen"
    done = run_cli("eval", "--model", "ecom-oracle", "--tasks", task, "--log_samples",
                   "--output_path", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    samples = next((tmp_path / "out").rglob(f"samples_{task}_*.jsonl"))
    records = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    # Other answers than the oracle's: "1" everywhere (right only where the gold is option 1).
    for record in records:
        record["filtered_resps"] = ["1"]
    changed = _write(tmp_path / samples.name, records)
    out = tmp_path / "scores.json"
    scored = run_cli("score", str(changed), "--output", str(out))
    assert scored.returncode == 0, scored.stderr[-2000:]
    report = json.loads(out.read_text())[str(changed)]
    assert report["scorer"] == "ecomharness_shopping_mmlu.metrics.process_generation"
    assert report["kind_source"] == f"task {task}" and report["n"] == len(records)
    rows = [metrics.process_generation(r["doc"], ["1"])["score"] for r in records]
    expected = metrics.skill_score(rows)
    assert 0 < expected < 1
    assert report["metrics"]["score"] == {"value": pytest.approx(expected, abs=1e-12), "stderr": None}
    assert "scored by ecomharness_shopping_mmlu.metrics.process_generation" in scored.stdout
