"""The recipe's eval profiles (inline and async), the seeded document subset, and a
checkpoint's records of several task sets read as one by the gate and the report."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from ecomharness.errors import UserError
from ecomharness.evaluation import per_document
from ecomharness.evaluation.checkpoint import EvalSettings, seeded_subset
from ecomharness.evaluation.ledger import append_record, checkpoint_records, latest_ok_records, read_ledger
from ecomharness.gate.evidence import load_evidence
from ecomharness.gate.checkpoints import ledger_judge
from ecomharness.report.curves import markdown_table, series
from ecomharness.train.recipe import parse_recipe

REPO = Path(__file__).resolve().parents[1]
BASE = {"run_dir": "runs/x", "model": {"init": {"architecture": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 4}},
        "data": {"path": "data"}}


def _recipe(eval_section, base=None):
    return parse_recipe({**BASE, "eval": eval_section}, base=base)


# --- the recipe ------------------------------------------------------------------------------

def test_one_task_set_form_is_the_profile_its_mode_names():
    inline = _recipe({"tasks": ["ecom_icl"], "limit": 3, "every_n_saves": 2}).eval
    assert inline.inline.tasks == ("ecom_icl",) and inline.inline.limit == 3 and inline.asynchronous is None
    assert inline.schedule(inline.inline) == 2
    asynchronous = _recipe({"tasks": "ecom_icl,general_icl", "mode": "async"}).eval
    assert asynchronous.inline is None and asynchronous.asynchronous.tasks == ("ecom_icl", "general_icl")
    assert not _recipe({"tasks": ["ecom_icl"], "mode": False}).eval.profiles()  # YAML's bare `off`


def test_profiles_form_reads_and_writes_back_the_same():
    recipe = _recipe({"inline": {"tasks": ["heldout_bpb", "ecom_icl_rc"], "subset": 50},
                      "async": {"tasks": ["ecom_icl"], "limit": 20, "every_n_saves": 4}, "every_n_saves": 1})
    spec = recipe.eval
    assert list(spec.profiles()) == ["inline", "async"]
    assert spec.schedule(spec.inline) == 1 and spec.schedule(spec.asynchronous) == 4
    assert spec.inline.settings().subset == 50 and spec.inline.settings().key() != spec.asynchronous.settings().key()
    again = parse_recipe(recipe.to_raw())
    assert again.eval == spec
    # A recipe kept in the one-task-set form reads as the same recipe in the new form.
    legacy = _recipe({"tasks": ["ecom_icl"], "limit": 3})
    assert parse_recipe(legacy.to_raw()).to_raw() == legacy.to_raw()


@pytest.mark.parametrize("section, message", [
    ({"tasks": ["a"], "inline": {"tasks": ["b"]}}, "give either one task set"),
    ({"inline": {"tasks": ["a"], "limit": 2, "subset": 3}}, "limit and subset both choose documents"),
    ({"inline": {}}, r"eval.inline.tasks: name the tasks"),
    ({"inline": {"tasks": ["a"], "subset": 0}}, r"eval.inline.subset: must be at least 1"),
    ({"async": {"tasks": ["a"], "every_n_saves": 0}}, r"eval.async.every_n_saves: must be at least 1"),
    ({"mode": "inline", "inline": {"tasks": ["a"]}}, "`mode` may only be `off`"),
    ({"inline": {"tasks": ["a"], "subst": 3}}, r"eval.inline: unknown key 'subst'"),
    ({"inline": ["a"]}, r"eval.inline: expected a mapping"),
    ({"tasks": ["a"], "mode": "sometimes"}, "eval.mode: expected inline, async or off"),
])
def test_bad_eval_sections_name_the_field(section, message):
    with pytest.raises(UserError, match=message):
        _recipe(section)


def test_a_data_builds_heldout_slice_is_found_without_being_named(tmp_path):
    (tmp_path / "data" / "heldout" / "domain").mkdir(parents=True)
    spec = _recipe({"inline": {"tasks": ["heldout_bpb"]}}, base=tmp_path).eval
    assert spec.inline.metadata == {"heldout_dir": str(tmp_path / "data" / "heldout")}
    named = _recipe({"inline": {"tasks": ["heldout_bpb"], "metadata": {"heldout_dir": "mine"}}}, base=tmp_path).eval
    assert named.inline.metadata == {"heldout_dir": str(tmp_path / "mine")}
    assert _recipe({"inline": {"tasks": ["heldout_bpb"]}}, base=tmp_path / "elsewhere").eval.inline.metadata == {}
    # A profile without held-out tasks keeps its key whatever data the run trains on.
    assert _recipe({"async": {"tasks": ["ecom_icl"]}}, base=tmp_path).eval.asynchronous.metadata == {}


def test_settings_key_of_ledgers_written_before_subset_existed_is_unchanged():
    settings = EvalSettings(tasks=("ecom_icl",), limit=3)
    fields = asdict(settings)
    del fields["subset"], fields["backend"]  # both added later, absent from older keys
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert settings.key() == expected == "3a4b76535fb5"  # the key ledgers written before hold
    assert EvalSettings(tasks=("ecom_icl",), limit=3, backend="vllm").key() != expected
    assert EvalSettings(tasks=("ecom_icl",), subset=3).key() != EvalSettings(tasks=("ecom_icl",), limit=3).key()


# --- the seeded subset -----------------------------------------------------------------------

def test_seeded_subset_is_fixed_sorted_and_drawn_per_task():
    first = seeded_subset("ecom_icl_pdc_rc", 10, 500, seed=1234)
    assert first == seeded_subset("ecom_icl_pdc_rc", 10, 500, seed=1234) == sorted(set(first))
    assert len(first) == 10 and all(0 <= i < 500 for i in first)
    assert first != seeded_subset("ecom_icl_ent_rc", 10, 500, seed=1234)
    assert first != seeded_subset("ecom_icl_pdc_rc", 10, 500, seed=1)
    assert seeded_subset("t", 10, 4, seed=0) == [0, 1, 2, 3]
    # Not a prefix: a file sorted by label does not give a subset of one label.
    assert first != list(range(10))


def test_subset_settings_choose_documents_and_the_record_says_which():
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator
    from ecomharness.evaluation.ledger import ledger_record
    from ecomharness.evaluation.reference_lms import OracleLM

    evaluator = CheckpointEvaluator(EvalSettings(tasks=("ecom_icl_pdc_rc",), subset=7, seed=5))
    chosen = evaluator.subset["ecom_icl_pdc_rc"]
    assert chosen["documents"] == 7 and chosen["of"] == 40 and chosen["seed"] == 5
    results = evaluator._evaluate(OracleLM())
    assert results["n-samples"]["ecom_icl_pdc_rc"]["effective"] == 7
    record = ledger_record("init", 0, evaluator.settings, results=results)
    assert record["subset"]["ecom_icl_pdc_rc"]["indices"] == chosen["indices"]
    assert record["metrics"]["ecom_icl_pdc_rc"]["acc"]["value"] == 1.0


# --- one checkpoint, several task sets -------------------------------------------------------

def _table(task: str, values: list[float], metric: str = "acc") -> dict:
    return {"format": per_document.FORMAT, "version": per_document.VERSION, "groups": {},
            "tasks": {task: {"doc_ids": [f"d{i}" for i in range(len(values))], "filter": "none",
                             "metrics": {metric: values}, "aggregation": {metric: "mean"},
                             "higher_is_better": {metric: metric != "bits_per_byte"}}}}


def _record(folder: Path, checkpoint: str, step: int, key: str, task: str, value: float, status: str = "ok",
            values: list[float] | None = None, metric: str = "acc") -> dict:
    record = {"checkpoint": checkpoint, "step": step, "task_set": key, "status": status, "eval_seconds": 1.0}
    if status != "ok":
        return {**record, "error": "RuntimeError: out of memory"}
    record["metrics"] = {task: {metric: {"value": value, "stderr": 0.01}}}
    record["n_samples"] = {task: {"original": 40, "effective": 40}}
    record["data_sources"] = {task: {"source": "bundled", "documents_hash": f"sha256:{task}"}}
    if values is not None:
        record["per_document"] = per_document.write(folder, f"{checkpoint}-{key}", _table(task, values, metric))
    return record


def test_a_checkpoints_task_sets_read_as_one_record(tmp_path):
    records = [
        _record(tmp_path, "init", 0, "inline", "ecom_icl_rc", 0.3),
        _record(tmp_path, "init", 0, "async", "ecom_icl", 0.0),
        _record(tmp_path, "checkpoint-5", 5, "inline", "ecom_icl_rc", 0.4),
        _record(tmp_path, "checkpoint-10", 10, "inline", "ecom_icl_rc", 0.5),
        _record(tmp_path, "checkpoint-10", 10, "async", "ecom_icl", 0.1),
    ]
    records[3]["tokens_seen"] = 5120  # the inline record knows; `watch`'s may not
    combined = checkpoint_records(records)
    assert [r["checkpoint"] for r in combined] == ["init", "checkpoint-5", "checkpoint-10"]
    assert combined[2]["tokens_seen"] == 5120
    assert combined[1] is records[2]  # one task set: the record itself
    last = combined[2]
    assert last["status"] == "ok" and last["task_sets"] == ["inline", "async"]
    assert set(last["metrics"]) == {"ecom_icl_rc", "ecom_icl"} and last["eval_seconds"] == 2.0
    # A re-evaluation of one task set replaces that set's record only.
    again = checkpoint_records(records + [_record(tmp_path, "checkpoint-10", 10, "inline", "ecom_icl_rc", 0.6)])
    assert again[2]["metrics"]["ecom_icl_rc"]["acc"]["value"] == 0.6 and again[2]["metrics"]["ecom_icl"]


def test_a_failed_task_set_fails_the_checkpoint_for_the_gate_but_not_the_report(tmp_path):
    records = [
        _record(tmp_path, "checkpoint-10", 10, "inline", "ecom_icl_rc", 0.5),
        _record(tmp_path, "checkpoint-10", 10, "async", "ecom_icl", 0.0, status="failed"),
    ]
    combined = checkpoint_records(records)[0]
    assert combined["status"] == "failed" and "task set async: RuntimeError: out of memory" in combined["error"]
    assert latest_ok_records(records)[0]["metrics"] == records[0]["metrics"]


def test_evidence_of_a_combined_record_has_every_task_sets_per_document_scores(tmp_path):
    ledger = tmp_path / "eval" / "ledger.jsonl"
    folder = ledger.parent
    for record in (_record(folder, "checkpoint-10", 10, "inline", "ecom_icl_rc", 0.5, values=[1, 0, 1, 0]),
                   _record(folder, "checkpoint-10", 10, "async", "ecom_icl", 0.25, values=[0.5, 0, 0.5, 0],
                           metric="score")):
        append_record(ledger, record)
    evidence = load_evidence(tmp_path, "last")
    assert set(evidence.metrics) == {"ecom_icl_rc", "ecom_icl"}
    assert set(evidence.per_document["tasks"]) == {"ecom_icl_rc", "ecom_icl"}
    # A damaged file of either task set is an input error, never a verdict.
    path = folder / read_ledger(ledger)[1]["per_document"]["file"]
    path.write_bytes(b"not gzip")
    with pytest.raises(UserError, match=r"per_document\[1\].*do not match the record"):
        load_evidence(tmp_path, "last")


POLICY = """
alpha: 0.05
rules:
  - {name: domain, kind: min_gain, tasks: [ecom_icl], metric: score, threshold: 0.0}
  - {name: choice, kind: min, tasks: [ecom_icl_rc], metric: acc, threshold: 0.4}
"""


@pytest.mark.parametrize("profiles", [1, 2])
def test_inline_judge_leaves_the_other_profiles_rules_pending(tmp_path, profiles):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    ledger = tmp_path / "eval" / "ledger.jsonl"
    append_record(ledger, _record(ledger.parent, "init", 0, "inline", "ecom_icl_rc", 0.3))
    append_record(ledger, _record(ledger.parent, "init", 0, "async", "ecom_icl", 0.0, metric="score"))
    judge = ledger_judge(str(policy), ledger, profiles=profiles)
    inline = _record(ledger.parent, "checkpoint-5", 5, "inline", "ecom_icl_rc", 0.5)
    verdict = judge(inline)
    if profiles == 1:  # nothing else will evaluate ecom_icl: missing fails, as in `ecomharness gate`
        assert verdict["passed"] is False and any("fail-closed: missing" in f for f in verdict["failed"])
        return
    assert verdict["passed"] is None and verdict["pending"] == ["domain: ecom_icl"] and not verdict["failed"]
    append_record(ledger, inline)
    # The async record's verdict reads the inline one too: every rule decided.
    decided = judge(_record(ledger.parent, "checkpoint-5", 5, "async", "ecom_icl", 0.1, metric="score"))
    assert decided["passed"] is True and "pending" not in decided
    failing = judge(_record(ledger.parent, "checkpoint-5", 5, "inline", "ecom_icl_rc", 0.2))
    assert failing["passed"] is False and failing["failed"][0].startswith("choice:")


# --- the report ------------------------------------------------------------------------------

def test_report_draws_each_task_by_its_headline_metric(tmp_path):
    records = checkpoint_records([
        _record(tmp_path, "checkpoint-5", 5, "inline", "heldout_bpb_domain", 3.1, metric="bits_per_byte"),
        _record(tmp_path, "checkpoint-5", 5, "inline2", "ecom_icl_rc", 0.4),
        _record(tmp_path, "checkpoint-10", 10, "inline", "heldout_bpb_domain", 2.9, metric="bits_per_byte"),
        _record(tmp_path, "checkpoint-10", 10, "async", "ecom_icl", 0.1, metric="score"),
    ])
    data = series(records)
    assert data["heldout_bpb_domain"] == [(5, 3.1, 0.01), (10, 2.9, 0.01)]
    assert data["ecom_icl_rc"] == [(5, 0.4, 0.01)] and data["ecom_icl"] == [(10, 0.1, 0.01)]
    table = markdown_table(records)
    assert "heldout_bpb_domain (bits_per_byte)" in table and "ecom_icl_rc (acc)" in table
    assert "| ecom_icl |" in table or "| ecom_icl" in table.splitlines()[0]
    assert set(series(records, "acc")) == {"ecom_icl_rc"}


def test_every_evaluation_draws_the_same_few_shot_examples():
    """A checkpoint's prompts must not depend on how many checkpoints the evaluator
    scored before it: the few-shot sampler is reseeded for each evaluation."""
    from lm_eval.api.model import LM

    from ecomharness.evaluation.checkpoint import CheckpointEvaluator

    class Prompts(LM):
        def __init__(self):
            super().__init__()
            self.seen = []

        def generate_until(self, requests, disable_tqdm=False):
            self.seen += [r.args[0] for r in requests]
            return [""] * len(requests)

        def loglikelihood(self, requests, disable_tqdm=False):
            return [(0.0, False)] * len(requests)

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            return [0.0] * len(requests)

    evaluator = CheckpointEvaluator(EvalSettings(tasks=("ecom_icl_des",), limit=4))
    first, second = Prompts(), Prompts()
    evaluator.evaluate_lm(first)
    evaluator.evaluate_lm(second)
    assert len(first.seen) == 4 and first.seen == second.seen
    assert all("输出：" in prompt for prompt in first.seen)  # three shots and the question
