"""The bundled task groups: oracle and empty reference models, real data, tiny model."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import BIN, SHARED_DATA, run_cli

GROUPS = ["ecom_icl", "ecom_sft", "general_icl", "flare"]
# Metrics where lower is better: the oracle scores 0 and the empty model 1.
LOWER_IS_BETTER = {"missing", "ambiguous"}
# What the empty model scores on metrics where empty is not the floor: an empty answer
# names no label (missing), names no two labels (not ambiguous), and FinBen's and PIXIU's
# own Headlines parsing reads anything but "Yes" as "No".
EMPTY_EXPECTED = {"missing": 1.0, "ambiguous": 0.0}
# EcomGPT's ROUGE-L (the `rouge` package) adds 1e-8 to its F denominator: identical
# texts score 2 / (2 + 1e-8), the best it gives.
ORACLE_EXPECTED = {"rougeL_ecomgpt": 2 / (2 + 1e-8)}


def _results(out):
    [path] = list(out.rglob("results_*.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def _metrics(task_results: dict):
    for key, value in task_results.items():
        if "," in key and "stderr" not in key and isinstance(value, (int, float)):
            yield key.split(",")[0], value


def _eval(tmp_path, *args):
    out = tmp_path / "out"
    result = run_cli("eval", *args, "--output_path", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    return _results(out)


def test_oracle_scores_the_maximum_of_every_metric(tmp_path):
    results = _eval(tmp_path, "--model", "ecom-oracle", "--tasks", ",".join(GROUPS))
    leaves = [t for t in results["results"] if t not in results.get("groups", {})]
    assert len(leaves) == 9 + 8 + 6 + 4
    for task in leaves:
        for metric, value in _metrics(results["results"][task]):
            expected = 0.0 if metric in LOWER_IS_BETTER else ORACLE_EXPECTED.get(metric, 1.0)
            assert value == pytest.approx(expected, rel=0, abs=1e-12 if metric in ORACLE_EXPECTED else 0), \
                f"{task} {metric} = {value}"
    for group in GROUPS:
        assert results["results"][group]["score,none"] == 1.0
    sources = results["ecomharness"]["data_sources"]
    assert set(sources) == set(leaves)
    for task, source in sources.items():
        assert source["origin"] == "bundled" and source["source"].startswith("bundled:_samples/")
        assert len(source["fingerprint"]) == 16 and 20 <= source["documents"] <= 50


def test_empty_model_scores_near_zero(tmp_path):
    results = _eval(tmp_path, "--model", "ecom-empty", "--tasks", ",".join(GROUPS), "--log_samples")
    unanswerable = sum(
        1 for line in next((tmp_path / "out").rglob("samples_general_icl_squad_v2_*.jsonl")).read_text().splitlines()
        if not json.loads(line)["doc"]["answers"]
    )
    for task, task_results in results["results"].items():
        if task in results.get("groups", {}) or task == "general_icl":
            continue
        for metric, value in _metrics(task_results):
            if metric in ("avg_f1_finben", "avg_f1_pixiu"):
                assert 0.0 < value < 1.0, f"{task} {metric} = {value}"
            elif metric in EMPTY_EXPECTED:
                assert value == EMPTY_EXPECTED[metric], f"{task} {metric} = {value}"
            elif task == "general_icl_squad_v2":
                # an empty answer is right exactly for the unanswerable questions
                assert value == pytest.approx(unanswerable / 40), metric
            else:
                assert value == 0.0, f"{task} {metric} = {value}"


def test_fewshot_examples_never_come_from_the_test_documents(tmp_path):
    from ecomharness.tasks.data import load_task
    from ecomharness.tasks.index import build_task_manager

    tm = build_task_manager(["ecom_icl"])
    task = tm.load(["ecom_icl_pdc"])["tasks"]["ecom_icl_pdc"]
    test = {json.dumps(d, sort_keys=True) for d in task.test_docs()}
    fewshot = {json.dumps(d, sort_keys=True) for d in task.fewshot_docs()}
    assert test and fewshot and not test & fewshot
    assert callable(load_task)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize("model", ["ecom-oracle", "ecom-empty"])
def test_real_data_through_the_task_definitions(tmp_path, model):
    metadata = json.dumps({"ecominstruct_dir": str(SHARED_DATA / "ecominstruct"),
                           "finben_dir": str(SHARED_DATA / "finben")})
    results = _eval(tmp_path, "--model", model, "--tasks", "ecom_icl_ave,ecom_sft_ave,flare_fiqasa",
                    "--metadata", metadata)
    best = model == "ecom-oracle"
    for task in ("ecom_icl_ave", "ecom_sft_ave", "flare_fiqasa"):
        for metric, value in _metrics(results["results"][task]):
            if best:
                expected = 0.0 if metric in LOWER_IS_BETTER else ORACLE_EXPECTED.get(metric, 1.0)
            else:
                expected = EMPTY_EXPECTED.get(metric, 0.0)
            # a mean of 500 equal values of 2 / (2 + 1e-8) is that value to rounding
            assert value == pytest.approx(expected, rel=0, abs=1e-12 if best and metric in ORACLE_EXPECTED else 0), \
                f"{task} {metric} = {value}"
    sources = results["ecomharness"]["data_sources"]
    assert sources["ecom_icl_ave"]["origin"] == "explicit"
    assert sources["ecom_icl_ave"]["source"].endswith("ZH-MEPAVE-NER-attribute_value_extraction")
    # 500 records, 32 held out as the few-shot pool of the 3-shot task; none of the zero-shot one
    assert sources["ecom_icl_ave"]["documents"] == 468 and sources["ecom_icl_ave"]["held_out_fewshot"] == 32
    assert sources["ecom_sft_ave"]["documents"] == sources["ecom_sft_ave"]["records_in_file"] == 500
    assert sources["flare_fiqasa"]["documents"] == 186
    assert sources["flare_fiqasa"]["source"].endswith("fiqasa/valid.jsonl")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
def test_generic_ecominstruct_task_on_a_real_folder(tmp_path):
    folder = SHARED_DATA / "ecominstruct" / "EN-ABSA-CLS-review_topic_category"
    results = _eval(tmp_path, "--model", "ecom-oracle", "--tasks", "ecominstruct,ecominstruct_cls",
                    "--metadata", json.dumps({"dir": str(folder)}))
    assert results["results"]["ecominstruct"]["score,none"] == 1.0
    assert results["results"]["ecominstruct_cls"]["macro_f1,none"] == 1.0


@pytest.mark.slow
def test_every_group_runs_on_a_tiny_model_through_both_commands(tiny_model_dir, tmp_path):
    tasks = ",".join(GROUPS)
    model_args = f"pretrained={tiny_model_dir},dtype=float32"
    results = _eval(tmp_path, "--model", "hf", "--model_args", model_args, "--tasks", tasks,
                    "--limit", "2", "--gen_kwargs", "max_gen_toks=8")
    for group in GROUPS:
        assert 0.0 <= results["results"][group]["score,none"] <= 1.0
    include = run_cli("tasks-path").stdout.strip()
    plain = subprocess.run(
        [str(BIN / "lm_eval"), "--model", "hf", "--model_args", model_args, "--device", "cpu",
         "--tasks", tasks, "--include_path", include, "--limit", "2", "--gen_kwargs", "max_gen_toks=8",
         "--output_path", str(tmp_path / "plain")],
        capture_output=True, text=True, cwd=tmp_path, timeout=900,
    )
    assert plain.returncode == 0, plain.stderr[-4000:]
    assert set(GROUPS) <= set(_results(tmp_path / "plain")["results"])


def test_lm_eval_validate_finds_every_task():
    from ecomharness.tasks.index import build_task_manager

    include = run_cli("tasks-path").stdout.strip()
    names = build_task_manager(["ecom_icl"]).all_tasks
    result = subprocess.run(
        [str(BIN / "lm_eval"), "validate", "--tasks", ",".join(names), "--include_path", include],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All tasks found and valid" in result.stdout
