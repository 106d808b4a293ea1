"""Standard errors lm-eval leaves as "N/A": filled by a bootstrap over documents."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ecomharness.evaluation.stderr import RESAMPLES, RESAMPLES_SLOW, fill_bootstrap_stderr
from ecomharness.metrics.lmeval import ie_f1


def _rows(n: int, seed: int) -> list:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        gold = [["yes"]] if rng.random() < 0.5 else []
        pred = [["yes"]] if rng.random() < (0.8 if gold else 0.3) else []
        rows.append([gold, pred])
    return rows


def _results(tasks: dict, groups: dict | None = None) -> tuple[dict, dict]:
    results = {"results": {}, "group_subtasks": {}, "n-samples": {}}
    table = {"tasks": {}, "groups": {}}
    for task, (aggregation, values, stderr) in tasks.items():
        value = ie_f1(values) if aggregation == "ie_f1" else float(np.mean(values)) if aggregation == "mean" else 0.5
        results["results"][task] = {"score,none": value, "score_stderr,none": stderr}
        results["n-samples"][task] = {"original": len(values), "effective": len(values)}
        table["tasks"][task] = {"doc_ids": [str(i) for i in range(len(values))], "filter": "none",
                                "metrics": {"score": values}, "aggregation": {"score": aggregation}}
    for group, (members, weight) in (groups or {}).items():
        results["results"][group] = {"score,none": 0.5, "score_stderr,none": "N/A"}
        results["group_subtasks"][group] = members
        table["groups"][group] = {"members": members, "aggregate": {"score": {"weight_by_size": weight}}}
    return results, table


def test_corpus_f1_stderr_matches_a_direct_bootstrap_and_lm_evals_own_stay():
    rows = _rows(300, 1)
    accuracy = [float(random.Random(2).random() < 0.6) for _ in range(300)]
    results, table = _results({"a": ("ie_f1", rows, "N/A"), "b": ("mean", accuracy, 0.028)})
    filled = fill_bootstrap_stderr(results, table)
    assert filled["metrics"] == {"a/score": RESAMPLES}
    assert results["results"]["b"]["score_stderr,none"] == 0.028  # lm-eval's own is kept
    rng = np.random.default_rng(7)
    direct = np.std([ie_f1([rows[i] for i in rng.integers(0, 300, 300)]) for _ in range(2000)], ddof=1)
    assert results["results"]["a"]["score_stderr,none"] == pytest.approx(direct, rel=0.1)
    again, table_again = _results({"a": ("ie_f1", rows, "N/A"), "b": ("mean", accuracy, 0.028)})
    fill_bootstrap_stderr(again, table_again)
    assert again["results"]["a"] == results["results"]["a"]  # seeded


def test_groups_get_lm_evals_group_stderr_from_their_leaves():
    from lm_eval.api.metrics import pooled_sample_stderr, unweighted_mean_stderr

    results, table = _results({"a": ("ie_f1", _rows(200, 3), "N/A"), "b": ("ie_f1", _rows(100, 4), "N/A")},
                              {"plain": (["a", "b"], False), "sized": (["a", "b"], True)})
    fill_bootstrap_stderr(results, table)
    se = [results["results"][t]["score_stderr,none"] for t in ("a", "b")]
    assert results["results"]["plain"]["score_stderr,none"] == pytest.approx(unweighted_mean_stderr(se))
    assert results["results"]["sized"]["score_stderr,none"] == pytest.approx(pooled_sample_stderr(se, [200, 100]))


def test_without_a_count_form_the_aggregation_itself_is_resampled():
    from lm_eval.api.registry import AGGREGATION_REGISTRY, register_aggregation

    if "median_for_test" not in AGGREGATION_REGISTRY:  # an aggregation no plugin gave a count form
        register_aggregation("median_for_test")(lambda values: float(np.median(values)))
    values = [float(i % 7) / 7 for i in range(90)]
    results, table = _results({"s": ("median_for_test", values, "N/A")})
    filled = fill_bootstrap_stderr(results, table)
    assert filled["metrics"] == {"s/score": RESAMPLES_SLOW}
    assert 0 < results["results"]["s"]["score_stderr,none"] < 0.2


def test_a_plugin_aggregation_with_a_count_form_is_resampled_as_counts():
    pytest.importorskip("ecomharness_shopping_mmlu.metrics")  # registers skill_score and its count form
    from ecomharness_shopping_mmlu.metrics import skill_score

    rows = [["t1", "accuracy", float(i % 3 == 0)] for i in range(60)] + [["t2", "micro f1", [1, 1, 0]]] * 30
    results, table = _results({"s": ("skill_score", rows, "N/A")})
    filled = fill_bootstrap_stderr(results, table)
    assert filled["metrics"] == {"s/score": RESAMPLES}
    rng = np.random.default_rng(3)
    direct = np.std([skill_score([rows[i] for i in rng.integers(0, 90, 90)]) for _ in range(2000)], ddof=1)
    assert results["results"]["s"]["score_stderr,none"] == pytest.approx(direct, rel=0.1)


def test_nothing_to_fill_leaves_no_record():
    results, table = _results({"b": ("mean", [1.0, 0.0, 1.0], 0.3)})
    assert fill_bootstrap_stderr(results, table) == {}
    unknown, table = _results({"c": ("no_such_aggregation", [1.0, 0.0], "N/A")})
    assert fill_bootstrap_stderr(unknown, table) == {} and unknown["results"]["c"]["score_stderr,none"] == "N/A"
