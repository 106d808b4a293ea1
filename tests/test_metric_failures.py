"""A task whose metric fails or overflows does not take the other tasks down (issue 32,
item 4): the failure is recorded for that task, value absent and reason kept, every other
result is written, and no non-finite value enters an aggregate silently."""

from __future__ import annotations

import json
import math

import pytest

from ecomharness.evaluation.guard import GuardedAggregation, MetricFailures, guard_tasks, settle
from tests.conftest import make_plugin_on_path, run_cli

# A plugin's task module: one metric whose aggregation raises, a process_results that
# raises on one document (the task "guard_process"), and a well-behaved metric.
FAILING = '''
def explode(items):
    raise ValueError("cannot aggregate these rows")


def process(doc, results):
    return {"good": float(results[0] == doc["target_text"]), "bad": 1.0}


def process_failing(doc, results):
    if doc["q"] == "q2":
        raise KeyError("label_set")
    return {"good": 1.0}
'''
TEMPLATE = '''dataset_path: json
dataset_kwargs: {{data_files: {{test: "{data}"}}}}
test_split: test
output_type: generate_until
doc_to_text: "{{{{q}}}}"
doc_to_target: "{{{{target_text}}}}"
generation_kwargs: {{until: ["\\n"], max_gen_toks: 8}}
'''


def _plugin(tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"q": f"q{i}", "target_text": f"a{i}"}) + "\n" for i in range(4)))
    template = TEMPLATE.format(data=data)
    files = {
        "failing_metrics.py": FAILING,
        "guard_demo.yaml": template + "task: guard_demo\nprocess_results: !function failing_metrics.process\n"
        "metric_list:\n  - {metric: good, aggregation: mean, higher_is_better: true}\n"
        "  - {metric: bad, aggregation: !function failing_metrics.explode, higher_is_better: true}\n"
        "metadata: {version: 1}\n",
        "guard_process.yaml": template + "task: guard_process\nprocess_results: !function failing_metrics.process_failing\n"
        "metric_list:\n  - {metric: good, aggregation: mean, higher_is_better: true}\nmetadata: {version: 1}\n",
        "guard_ok.yaml": template + "task: guard_ok\nprocess_results: !function failing_metrics.process\n"
        "metric_list:\n  - {metric: good, aggregation: mean, higher_is_better: true}\n"
        "  - {metric: bad, aggregation: mean, higher_is_better: true}\nmetadata: {version: 1}\n",
        "_guard_group.yaml": "group: guard_group\ntask: [guard_demo, guard_ok]\naggregate_metric_list:\n"
        "  - {metric: good, aggregation: mean, weight_by_size: false}\n"
        "  - {metric: bad, aggregation: mean, weight_by_size: false}\nmetadata: {version: 1}\n",
    }
    return make_plugin_on_path(tmp_path / "plugin", "guard_demo_plugin", files)


def test_a_metric_that_fails_is_recorded_for_its_task_and_the_other_results_are_written(tmp_path):
    env = _plugin(tmp_path)
    out = tmp_path / "out"
    done = run_cli("eval", "--model", "ecom-oracle", "--tasks", "guard_group,guard_process,ecom_icl_pdc",
                   "--limit", "4", "--output_path", str(out), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    scores, failures = results["results"], results["ecomharness"]["metric_failures"]
    # The failed aggregation: value and stderr absent, the reason kept.
    assert "bad,none" not in scores["guard_demo"] and "bad_stderr,none" not in scores["guard_demo"]
    assert failures["guard_demo"]["bad"] == ("its aggregation explode failed: ValueError: cannot aggregate "
                                             "these rows")
    assert scores["guard_demo"]["good,none"] == 1.0
    # A document whose scoring raised: every metric of that task absent, with the reason.
    assert "good,none" not in scores["guard_process"]
    assert failures["guard_process"]["good"].startswith("scoring a document failed (process_results): KeyError")
    # The group's aggregate of the failed metric is left out, naming the member; its other one stays.
    assert "bad,none" not in scores["guard_group"]
    assert failures["guard_group"]["bad"].startswith("member guard_demo's bad could not be computed")
    assert scores["guard_group"]["good,none"] == 1.0
    # The other tasks, as without the failures.
    assert scores["guard_ok"]["bad,none"] == 1.0 and scores["ecom_icl_pdc"]["score,none"] == 1.0
    assert "not computed: guard_demo bad: its aggregation explode failed" in done.stderr


def test_settle_leaves_out_nan_and_keeps_inf_out_of_group_aggregates():
    results = {
        "results": {
            "a": {"ppl,none": math.inf, "ppl_stderr,none": math.nan, "acc,none": math.nan, "acc_stderr,none": 0.1,
                  "ok,none": 0.5, "ok_stderr,none": 0.1, "alias": "a"},
            "b": {"ppl,none": 3.0, "acc,none": 1.0, "ok,none": 1.0},
            "g": {"ppl,none": math.inf, "acc,none": math.nan, "ok,none": 0.75},
        },
        "groups": {"g": {"ppl,none": math.inf, "acc,none": math.nan, "ok,none": 0.75}},
        "group_subtasks": {"g": ["a", "b"], "a": [], "b": []},
    }
    reasons = settle(results, MetricFailures())
    a = results["results"]["a"]
    assert a["ppl,none"] == math.inf and a["ppl_stderr,none"] == "N/A"  # reported as infinite, no spread
    assert "acc,none" not in a and "acc_stderr,none" not in a
    assert reasons["a"] == {"acc": "it came out NaN (a document's value was not a number)"}
    assert reasons["g"]["ppl"] == "member a's ppl is infinite: an aggregate of it would be too"
    assert reasons["g"]["acc"].startswith("member a's acc could not be computed")
    assert results["results"]["g"] == {"ok,none": 0.75} and results["groups"]["g"] == {"ok,none": 0.75}


def test_the_guard_keeps_lm_evals_stderr_choice_and_survives_its_bootstrap_workers():
    """lm-eval chooses a stderr by the aggregation function itself, and sends
    bootstrapped ones to worker processes: the guard must compare as the function it
    guards and pickle."""
    import pickle

    from lm_eval.api.metrics import mean, mean_stderr, perplexity, stderr_for_metric

    failures = MetricFailures()
    guarded_mean = GuardedAggregation(mean, "t", "acc", failures)
    assert stderr_for_metric(guarded_mean, bootstrap_iters=10) is mean_stderr
    guarded_ppl = GuardedAggregation(perplexity, "t", "ppl", failures)
    assert stderr_for_metric(guarded_ppl, bootstrap_iters=10) is not None
    assert pickle.loads(pickle.dumps(guarded_ppl))([-1.0, -1.0]) == pytest.approx(math.e)
    # lm-eval's perplexity overflows on a weak enough model: NaN and a reason, not a crash.
    assert math.isnan(guarded_ppl([-1000.0]))
    assert failures.reasons["t"]["ppl"].startswith("its aggregation perplexity failed: OverflowError")


class _Task:
    def __init__(self):
        self._aggregations = {"x": sum}

    def aggregation(self):
        return self._aggregations

    def process_results(self, doc, results):
        return {"x": 1}


def test_guarding_twice_wraps_once():
    task, failures = _Task(), MetricFailures()
    loaded = {"tasks": {"t": task}}
    guard_tasks(loaded, failures)
    guard_tasks(loaded, failures)
    assert task.aggregation()["x"].function is sum
    assert task.process_results.function.__func__ is _Task.process_results


@pytest.mark.slow
def test_a_weak_models_overflowing_perplexity_beside_another_task_in_the_checkpoint_evaluator(
        tiny_model_dir, offline_task_data):
    """The inline / watch path (CheckpointEvaluator): a random tiny model's word
    perplexity on the held-out Chinese text overflows a float; it is +inf with no stderr,
    and the other task's results are there."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings
    from ecomharness.evaluation.ledger import ledger_record

    settings = EvalSettings(tasks=("heldout_bpb_general_zh", "ecom_icl_pdc_rc"), limit=6)
    evaluator = CheckpointEvaluator(settings)
    results = evaluator.evaluate_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                       AutoTokenizer.from_pretrained(tiny_model_dir))
    zh = results["results"]["heldout_bpb_general_zh"]
    assert zh["word_perplexity,none"] == math.inf and zh["word_perplexity_stderr,none"] == "N/A"
    assert 0 < zh["bits_per_byte,none"] < 100 and math.isfinite(zh["bits_per_byte_stderr,none"])
    assert 0 <= results["results"]["ecom_icl_pdc_rc"]["acc,none"] <= 1
    assert "metric_failures" not in results  # +inf is a value, reported with a warning, not a failure
    record = ledger_record("checkpoint-1", 1, settings, results=results)
    assert record["status"] == "ok" and record["metrics"]["heldout_bpb_general_zh"]["word_perplexity"] == {
        "value": math.inf, "stderr": None}
