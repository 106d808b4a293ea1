"""Clustered documents (evaluation/clusters.py): the cluster-robust standard error against
statsmodels, a coverage simulation with known intra-cluster correlation, and the
clusters carried from a task's YAML through the per-document table into the stderr and
the gate's paired tests."""

from __future__ import annotations

import numpy as np
import pytest

from ecomharness.errors import UserError
from ecomharness.evaluation.clusters import cluster_index, cluster_robust_se
from ecomharness.evaluation.per_document import check_table, collect
from ecomharness.evaluation.stderr import fill_bootstrap_stderr
from ecomharness.gate.paired import paired_bootstrap
from ecomharness.gate.pairing import Unpaired, paired_result
from ecomharness.metrics.corpus import count_form
from tests.test_paired import _evidence


def test_cluster_robust_se_equals_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    for clusters, binary in ((7, False), (40, True), (200, False)):
        labels = rng.integers(0, clusters, 600)
        values = rng.normal(size=600) + rng.normal(size=clusters)[labels]
        if binary:
            values = (values > 0).astype(float)
        index, count = cluster_index([str(x) for x in labels])
        fit = sm.OLS(values, np.ones((len(values), 1))).fit(cov_type="cluster", cov_kwds={"groups": labels})
        assert cluster_robust_se(values, index, count) == pytest.approx(float(fit.bse[0]), rel=1e-12, abs=1e-15)


def test_a_document_without_its_cluster_field_is_a_cluster_of_its_own():
    index, count = cluster_index(["a", None, "a", "b", None])
    assert index.tolist() == [0, 1, 0, 2, 3] and count == 4


def _simulated(rng, clusters: int = 50, icc: float = 0.3, true: float = 0.05):
    """Per-document score differences d = true + a_cluster + e, Var(a) / Var(d) = icc,
    in clusters of 2 to 8 documents."""
    sizes = rng.integers(2, 9, clusters)
    index = np.repeat(np.arange(clusters), sizes)
    d = true + rng.normal(0, np.sqrt(icc) * 0.4, clusters)[index] + rng.normal(0, np.sqrt(1 - icc) * 0.4, len(index))
    return d, index


def test_clustered_intervals_cover_the_true_difference_and_document_ones_do_not():
    """2,000 simulated evaluations (50 clusters, intra-cluster correlation 0.3): the
    cluster-robust 95% interval and the paired cluster bootstrap's cover the true
    difference 95% of the time within 1.5 points; the document-level interval, which
    counts documents as independent, covers it less often."""
    rng = np.random.default_rng(2024)
    true, sims = 0.05, 2000
    covered = {"clustered": 0, "cluster bootstrap": 0, "document": 0}
    for sim in range(sims):
        d, index = _simulated(rng, true=true)
        n = len(d)
        covered["clustered"] += abs(d.mean() - true) <= 1.959964 * cluster_robust_se(d, index, 50)
        covered["document"] += abs(d.mean() - true) <= 1.959964 * d.std(ddof=1) / np.sqrt(n)
        # The paired test sees the two models' scores; their difference is what it resamples.
        baseline = rng.normal(0.5, 0.2, n)
        result = paired_bootstrap([(count_form("mean", list(baseline + d)), count_form("mean", list(baseline)), 1.0)],
                                  resamples=400, seed=sim, label="sim", clusters=[(index, 50)])
        covered["cluster bootstrap"] += result.ci[0] <= true <= result.ci[1]
    coverage = {k: v / sims for k, v in covered.items()}
    print("coverage over", sims, "simulations:", coverage)
    assert abs(coverage["clustered"] - 0.95) <= 0.015, coverage
    assert abs(coverage["cluster bootstrap"] - 0.95) <= 0.015, coverage
    assert coverage["document"] < 0.90, coverage


def _results(clusters_key: str | None):
    """lm-eval results with logged samples of one task whose documents share passages."""
    rng = np.random.default_rng(5)
    passages = np.repeat(np.arange(30), 4)
    effect = rng.normal(0, 1, 30)[passages]
    acc = (effect + rng.normal(0, 0.5, len(passages)) > 0).astype(float)
    samples = [{"doc_id": i, "doc": {"context": f"passage {p}", "question": f"q{i}"}, "doc_hash": f"h{i}",
                "filter": "none", "metrics": ["acc"], "acc": a} for i, (p, a) in enumerate(zip(passages, acc))]
    config = {"task": "reading", "metadata": {"version": 1, **({"cluster_key": clusters_key} if clusters_key else {})},
              "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    naive = float(acc.std(ddof=1) / np.sqrt(len(acc)))
    results = {"results": {"reading": {"acc,none": float(acc.mean()), "acc_stderr,none": naive}},
               "samples": {"reading": samples}, "configs": {"reading": config}, "group_subtasks": {},
               "higher_is_better": {"reading": {"acc": True}}}
    return results, acc, passages, naive


def test_a_task_declaring_a_cluster_key_gets_cluster_robust_stderrs():
    results, acc, passages, naive = _results("context")
    table = collect(results)
    check_table(table, "table")
    entry = table["tasks"]["reading"]
    assert entry["cluster_key"] == "context" and len(set(entry["clusters"])) == 30
    filled = fill_bootstrap_stderr(results, table)
    clustered = results["results"]["reading"]["acc_stderr,none"]
    index, count = cluster_index([f"passage {p}" for p in passages])
    assert clustered == pytest.approx(cluster_robust_se(acc, index, count), rel=1e-12)
    # Documents of one passage move together: the honest error is larger.
    assert clustered > 1.3 * naive
    assert filled["clustered"] == {"reading": {"key": "context", "clusters": 30, "unclustered": 0}}
    # Without the key nothing changes: lm-eval's own stderr stays.
    plain, _, _, naive = _results(None)
    plain_table = collect(plain)
    assert "clusters" not in plain_table["tasks"]["reading"]
    fill_bootstrap_stderr(plain, plain_table)
    assert plain["results"]["reading"]["acc_stderr,none"] == naive


def test_a_bad_cluster_list_is_refused_when_read():
    results, _, _, _ = _results("context")
    table = collect(results)
    table["tasks"]["reading"]["clusters"] = table["tasks"]["reading"]["clusters"][:-1]
    with pytest.raises(UserError, match=r"tasks\.reading\.clusters must be one cluster label"):
        check_table(table, "table")


def _clustered_table(task: str, labels: list[str], values: list[float]) -> dict:
    return {"tasks": {task: {"doc_ids": [f"d{i}" for i in range(len(values))], "filter": "none",
                             "metrics": {"score": values}, "aggregation": {"score": "mean"},
                             "higher_is_better": {"score": True}, "cluster_key": "context",
                             "clusters": labels}}, "groups": {}}


def test_the_gate_tests_clustered_documents_by_cluster_and_says_how_many():
    rng = np.random.default_rng(9)
    labels = [f"p{i // 5}" for i in range(100)]
    base = [float(x) for x in rng.random(100) < 0.4]
    # The candidate gains on whole passages: twenty documents in four passages.
    cand = [1.0 if labels[i] in {"p0", "p1", "p2", "p3"} else b for i, b in enumerate(base)]
    candidate = _evidence("c", [_clustered_table("t", labels, cand)], {"t": (float(np.mean(cand)), 0.05)})
    baseline = _evidence("b", [_clustered_table("t", labels, base)], {"t": (float(np.mean(base)), 0.05)})
    result = paired_result("t", "score", candidate, baseline)
    assert result.test == "paired-cluster-bootstrap" and result.details["clusters"] == 20 and result.n == 100
    # McNemar, counting documents as independent pairs, would call it more certain.
    plain = {k: _evidence(k, [_clustered_table("t", labels, v)], {"t": (float(np.mean(v)), 0.05)})
             for k, v in (("c", cand), ("b", base))}
    for evidence in plain.values():
        for entry in evidence.per_document["tasks"].values():
            entry.pop("clusters"), entry.pop("cluster_key")
    document_level = paired_result("t", "score", plain["c"], plain["b"])
    assert document_level.test.startswith("mcnemar") and document_level.p < result.p
    # The same documents grouped differently on the two sides are not paired.
    moved = _evidence("b", [_clustered_table("t", [f"p{i // 4}" for i in range(100)], base)], {"t": (0.4, 0.05)})
    with pytest.raises(Unpaired, match="different clusters"):
        paired_result("t", "score", candidate, moved)


def test_the_gate_reason_names_the_clusters():
    from ecomharness.gate.significance import Significance, describe

    test = Significance(test="paired-cluster-bootstrap", p=0.01, mde=0.1,
                        details={"n": 100, "clusters": 20, "ci_low": 0.01, "ci_high": 0.2, "ci_level": 0.95})
    assert "n=100 in 20 clusters" in describe(test, None)


def test_bundled_reading_tasks_cluster_by_passage():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1] / "tasks" / "general_icl"
    for name in ("general_icl_squad_v2", "general_icl_cmrc2018"):
        text = (root / f"{name}.yaml").read_text(encoding="utf-8")
        assert yaml.safe_load(text)["metadata"]["cluster_key"] == "context"
