"""Per-document scores end to end: every ledger record and `ecomharness eval` result keeps
them in a sidecar; group scores recompute from them exactly; the gate pairs on them; a
damaged sidecar is an input error, never a verdict."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest

from ecomharness.evaluation.reference_lms import EmptyLM, OracleLM, _gold_text
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # builds real lm-eval tasks (seconds)


class PartialLM(OracleLM):
    """Gold for some documents, half of it for others, nothing for the rest (by prompt
    hash), so that every metric takes values strictly between its floor and maximum."""

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for request in requests:
            gold = _gold_text(request)
            pick = zlib.crc32(repr(request.args[0]).encode()) % 3
            out.append(gold if pick == 0 else gold[: len(gold) // 2] if pick == 1 else "")
        return out


def _ledger(tmp_path: Path, tasks: tuple[str, ...]) -> Path:
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings
    from ecomharness.evaluation.ledger import evaluate_and_record, ledger_path

    evaluator = CheckpointEvaluator(EvalSettings(tasks=tasks, metadata={"max_docs": 12}))
    ledger = ledger_path(tmp_path / "run")
    ledger.parent.mkdir(parents=True)
    for name, step, lm in (("init", 0, EmptyLM()), ("checkpoint-10", 10, PartialLM())):
        evaluate_and_record(ledger, evaluator.settings, name, step, lambda lm=lm: evaluator._evaluate(lm),
                            data_sources=evaluator.data_sources)
    return ledger


def test_ledger_records_reference_per_document_scores_that_recompute_every_score(tmp_path, offline_task_data):
    from ecomharness.evaluation.ledger import read_ledger
    from ecomharness.gate.evidence import from_record
    from ecomharness.gate.pairing import Unpaired, strata

    ledger = _ledger(tmp_path, ("ecom_icl", "general_icl"))
    init, trained = read_ledger(ledger, strict=True)
    reference = trained["per_document"]
    assert reference["file"].startswith("per_document/") and (ledger.parent / reference["file"]).is_file()
    assert reference["bytes"] < 200_000
    evidence = from_record(trained, "t", ledger.parent)
    recomputed = 0
    for task, metrics in trained["metrics"].items():
        for metric, measure in metrics.items():
            try:
                found = strata(task, metric, evidence, evidence)
            except Unpaired:
                continue
            value = sum(weight * candidate.value() for candidate, _, weight in found.parts)
            assert value == pytest.approx(measure["value"], abs=1e-12), (task, metric)
            recomputed += 1
    # every metric of both groups and their tasks, the groups' nested means included
    assert recomputed == sum(len(m) for m in trained["metrics"].values())
    assert 0 < trained["metrics"]["ecom_icl"]["score"]["value"] < 1


def test_gate_from_a_ledger_decides_on_paired_evidence_and_a_damaged_sidecar_is_exit_2(tmp_path, offline_task_data):
    ledger = _ledger(tmp_path, ("ecom_icl_cls",))
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - {kind: min_gain, tasks: [ecom_icl_cls, ecom_icl_pdc], threshold: 0.0, "
                      "significant: true}\n", encoding="utf-8")
    result = run_cli("gate", "--policy", str(policy), "--ledger", str(ledger.parent.parent), "--json",
                     str(tmp_path / "verdict.json"))
    assert result.returncode in (0, 1), result.stderr[-2000:]
    verdict = json.loads((tmp_path / "verdict.json").read_text(encoding="utf-8"))
    tests = {c["task"]: c["inputs"]["test"] for c in verdict["checks"]}
    assert tests == {"ecom_icl_cls": "stratified-paired-bootstrap", "ecom_icl_pdc": "mcnemar-exact-midp"}
    assert all("could not have been detected" in c["reason"] for c in verdict["checks"])
    # the sidecar is altered: the gate refuses to decide
    [sidecar] = (ledger.parent / "per_document").glob("checkpoint-10-*.json.gz")
    table = json.loads(gzip.decompress(sidecar.read_bytes()))
    table["tasks"]["ecom_icl_pdc"]["metrics"]["acc"][0] = 1.0 - table["tasks"]["ecom_icl_pdc"]["metrics"]["acc"][0]
    sidecar.write_bytes(gzip.compress(json.dumps(table).encode()))
    damaged = run_cli("gate", "--policy", str(policy), "--ledger", str(ledger.parent.parent))
    assert damaged.returncode == 2 and "do not match the record" in damaged.stderr
    sidecar.unlink()
    missing = run_cli("gate", "--policy", str(policy), "--ledger", str(ledger.parent.parent))
    assert missing.returncode == 2 and "cannot be read" in missing.stderr


def test_eval_results_reference_their_per_document_scores_and_gate_pairs_two_results(tmp_path, offline_task_data):
    outputs = {}
    for model in ("ecom-oracle", "ecom-empty"):
        out = tmp_path / model
        result = run_cli("eval", "--model", model, "--tasks", "ecom_icl_pdc", "--output_path", str(out),
                         "--metadata", '{"max_docs": 20}')
        assert result.returncode == 0, result.stderr[-2000:]
        [results_file] = out.rglob("results_*.json")
        results = json.loads(results_file.read_text(encoding="utf-8"))
        reference = results["ecomharness"]["per_document"]
        assert (results_file.parent / reference["file"]).is_file()
        assert not list(out.rglob("samples_*.jsonl"))  # --log_samples was not given
        outputs[model] = results_file
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - {kind: max_drop, tasks: [ecom_icl_pdc], metric: acc, threshold: 0.0, alpha: 0.05}\n",
                      encoding="utf-8")
    result = run_cli("gate", "--policy", str(policy), "--candidate", str(outputs["ecom-empty"]),
                     "--baseline", str(outputs["ecom-oracle"]))
    assert result.returncode == 1 and "mcnemar-exact-midp" in result.stdout + result.stderr


def test_compare_and_plan_on_a_ledger(tmp_path, offline_task_data):
    ledger = _ledger(tmp_path, ("ecom_icl_cls",))
    run = str(ledger.parent.parent)
    result = run_cli("compare", run, run, "--tasks", "ecom_icl_*", "--metrics", "score,macro_f1",
                     "--json", str(tmp_path / "c.json"), "--resamples", "2000")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {(r["task"], r["metric"]): r for r in json.loads((tmp_path / "c.json").read_text())["rows"]}
    assert rows[("ecom_icl_pdc", "score")]["test"] == "mcnemar-exact-midp"
    assert rows[("ecom_icl_pdc", "macro_f1")]["test"] == "paired-bootstrap"
    assert rows[("ecom_icl_cls", "score")]["test"] == "stratified-paired-bootstrap"
    assert "| ecom_icl_pdc | score |" in result.stdout
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - {kind: max_drop, tasks: [ecom_icl_pdc], threshold: 0.05, alpha: 0.05}\n",
                      encoding="utf-8")
    plan = run_cli("gate", "--policy", str(policy), "--ledger", run, "--plan", "--json", str(tmp_path / "p.json"))
    assert plan.returncode == 0, plan.stderr[-2000:]
    [row] = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert row["n"] == 12 and row["needed"] > 12 and row["target"] == 0.05
    assert "documents needed" in plan.stdout
    bad = run_cli("compare", run, str(tmp_path / "nope"))
    assert bad.returncode == 2 and "nope" in bad.stderr
