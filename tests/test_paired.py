"""Paired statistics: each test against a reference implementation, count forms against
the aggregations they stand for, pairing by document id, the fallback reasons, Holm,
the detectable effect, and (slow) the type-I error and power by simulation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from ecomharness.gate.evidence import Evidence, Measure
from ecomharness.gate.paired import (
    bootstrap_differences,
    holm,
    mcnemar,
    paired_bootstrap,
    paired_test,
)
from ecomharness.gate.pairing import Unpaired, strata
from ecomharness.gate.policy import parse_policy
from ecomharness.gate.verdict import run_gate
from ecomharness.metrics import lmeval
from ecomharness.metrics.corpus import count_form, paired_count_forms
from ecomharness.metrics.corpus import _mean as mean_form

SOURCE = {"origin": "explicit", "source": "/data/x", "fingerprint": "abc"}


# ---------------------------------------------------------------- tests vs references


def test_mcnemar_exact_matches_scipy_binomtest():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(5, 400))
        c, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
        result = mcnemar(c, b, mid_p=False)
        gains, losses = result.details["gains"], result.details["losses"]
        reference = stats.binomtest(min(gains, losses), gains + losses, 0.5).pvalue if gains + losses else 1.0
        assert result.p == pytest.approx(reference, rel=1e-9, abs=1e-12)
        assert result.difference == pytest.approx((c.mean() - b.mean()))


def test_mcnemar_mid_p_is_the_exact_p_less_the_observed_probability():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(5, 300))
        c, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
        exact, mid = mcnemar(c, b, mid_p=False), mcnemar(c, b)
        gains, losses = exact.details["gains"], exact.details["losses"]
        if gains == losses:
            assert mid.p == 1.0
            continue
        pmf = stats.binom.pmf(min(gains, losses), gains + losses, 0.5)
        assert mid.p == pytest.approx(min(1.0, exact.p - pmf), rel=1e-9)


def test_lm_eval_proposal_example_paired_beats_unpaired():
    # The example of lm-eval PRs #3835/#3868 in shape: n=220, accuracy 0.50 -> 0.58
    # with most documents answered alike. Unpaired: p around 0.09; McNemar: far smaller.
    n, gains, losses = 220, 24, 6
    b = np.array([1] * 110 + [0] * 110)
    c = b.copy()
    c[np.where(b == 0)[0][:gains]] = 1
    c[np.where(b == 1)[0][:losses]] = 0
    paired = mcnemar(c, b)
    se = lambda x: math.sqrt(x.mean() * (1 - x.mean()) / (n - 1))  # noqa: E731 - lm-eval's sample stderr
    z = (c.mean() - b.mean()) / math.sqrt(se(c) ** 2 + se(b) ** 2)
    unpaired_p = math.erfc(abs(z) / math.sqrt(2))
    assert unpaired_p > 0.05 > paired.p and paired.p < 0.002


def test_cross_checks_match_scipys_paired_t_and_wilcoxon():
    rng = np.random.default_rng(2)
    for n in (3, 12, 80, 500):
        c, b = rng.random(n), rng.random(n)
        b[: n // 4] = c[: n // 4]  # zero differences, dropped by Wilcoxon
        c = np.round(c, 1)  # tied magnitudes
        result = paired_test([(mean_form(c), mean_form(b), 1.0)], resamples=200)
        assert result.test == "paired-bootstrap"
        assert result.details["p_paired_t"] == pytest.approx(stats.ttest_rel(c, b).pvalue, rel=1e-9)
        assert result.details["p_wilcoxon"] == pytest.approx(
            stats.wilcoxon(c - b, method="approx", correction=False).pvalue, rel=1e-9)


def test_paired_bootstrap_interval_agrees_with_scipy():
    rng = np.random.default_rng(3)
    b = rng.random(300)
    c = np.clip(b + rng.normal(0.03, 0.1, 300), 0, 1)
    ours = paired_bootstrap([(mean_form(c), mean_form(b), 1.0)], alpha=0.05, resamples=10_000, seed=7)
    ref = stats.bootstrap((c, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                          paired=True, vectorized=True, n_resamples=10_000, method="percentile",
                          random_state=np.random.default_rng(7)).confidence_interval
    assert ours.ci[0] == pytest.approx(ref.low, abs=0.002) and ours.ci[1] == pytest.approx(ref.high, abs=0.002)
    assert ours.difference == pytest.approx(c.mean() - b.mean())
    # and the p agrees with the paired t-test on a sample this large
    assert ours.p == pytest.approx(stats.ttest_rel(c, b).pvalue, abs=0.01)


def test_bootstrap_is_seeded_and_independent_of_other_tasks():
    rng = np.random.default_rng(4)
    c, b = mean_form(rng.random(50)), mean_form(rng.random(50))
    first = bootstrap_differences([(c, b, 1.0)], 500, seed=3, label="t")
    assert np.array_equal(first, bootstrap_differences([(c, b, 1.0)], 500, seed=3, label="t"))
    assert not np.array_equal(first, bootstrap_differences([(c, b, 1.0)], 500, seed=4, label="t"))


def test_holm_matches_the_textbook_example():
    # Holm (1979) step-down: sorted p * (m - rank), made monotone.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]


# ---------------------------------------------------------------- count forms


def _cls_rows(rng: random.Random, n: int, labels=("a", "b", "c", "d")) -> list:
    rows = []
    for _ in range(n):
        gold = [rng.choice(labels)]
        pred = [] if rng.random() < 0.15 else [rng.choice(labels)]
        rows.append([gold, pred])
    return rows


def _ie_rows(rng: random.Random, n: int) -> list:
    spans = [["brand", "x"], ["color", "red"], ["size", "L"], ["brand", "y"]]
    return [[rng.sample(spans, rng.randint(0, 3)), rng.sample(spans, rng.randint(0, 3))] for _ in range(n)]


def _lm_eval_aggregation(name: str):
    from lm_eval.api.registry import get_aggregation

    return get_aggregation(name)


def _finben_rows(rng: random.Random, n: int) -> list:
    return [[rng.choice(("positive", "negative", "neutral")), rng.choice(("positive", "negative", "missing"))]
            for _ in range(n)]


def _headlines_rows(rng: random.Random, n: int) -> list:
    return [[rng.choice(("price up", "price down", "past")), *row] for row in _cls_rows(rng, n, ("yes", "no"))]


def _headlines_finben_rows(rng: random.Random, n: int) -> list:
    return [[rng.choice(("price up", "price down", "past")), rng.choice(("yes", "no")), rng.choice(("yes", "no"))]
            for _ in range(n)]


def _rolling_rows(rng: random.Random, n: int) -> list:
    return [[-rng.uniform(1, 400), rng.randint(5, 300)] for _ in range(n)]


ROWS = {"bits_per_byte": _rolling_rows, "weighted_perplexity": _rolling_rows, "cls_macro_f1": _cls_rows, "cls_weighted_f1": _cls_rows, "ie_precision": _ie_rows, "ie_recall": _ie_rows,
        "ie_f1": _ie_rows, "f1_finben": _finben_rows, "headlines_avg_f1": _headlines_rows,
        "avg_f1_finben": _headlines_finben_rows}


@pytest.mark.parametrize("aggregation", sorted(ROWS))
def test_count_forms_equal_the_aggregations_on_every_subset(aggregation):
    rng = random.Random(aggregation)
    function = getattr(lmeval, aggregation, None) or _lm_eval_aggregation(aggregation)
    for _ in range(30):
        rows = ROWS[aggregation](rng, rng.randint(1, 40))
        form = count_form(aggregation, rows)
        assert form.value() == pytest.approx(function(rows), abs=1e-12)
        # a resample: documents drawn with repetition, as weights
        picks = [rng.randrange(len(rows)) for _ in range(len(rows))]
        weights = np.bincount(picks, minlength=len(rows))[None, :].astype(float)
        assert form.value(weights)[0] == pytest.approx(function([rows[i] for i in picks]), abs=1e-12)


def test_paired_count_forms_share_one_label_set():
    rng = random.Random(5)
    c, b = _cls_rows(rng, 30, ("a", "b")), _cls_rows(rng, 30, ("b", "c"))
    forms = paired_count_forms("cls_macro_f1", c, b)
    assert forms[0].value() == pytest.approx(lmeval.cls_macro_f1(c))
    assert forms[1].value() == pytest.approx(lmeval.cls_macro_f1(b))
    c, b = _headlines_rows(rng, 30), _headlines_rows(rng, 30)
    c = [[row[0], *rest] for row, (_, *rest) in zip(b, c)]  # the same documents: the same label types
    forms = paired_count_forms("headlines_avg_f1", c, b)
    assert forms[0].value() == pytest.approx(lmeval.headlines_avg_f1(c))
    assert forms[1].value() == pytest.approx(lmeval.headlines_avg_f1(b))


# ---------------------------------------------------------------- pairing


def _table(task: str, ids: list[str], values: list, aggregation: str = "mean", groups: dict | None = None) -> dict:
    return {"format": "ecomharness-per-document", "version": 1,
            "tasks": {task: {"doc_ids": ids, "filter": "none", "metrics": {"score": values},
                             "aggregation": {"score": aggregation}, "higher_is_better": {"score": True}}},
            "groups": groups or {}}


def _evidence(label: str, tables: list[dict] | None, scores: dict, groups: dict | None = None) -> Evidence:
    per_document = None
    if tables is not None:
        per_document = {"format": "ecomharness-per-document", "version": 1, "tasks": {}, "groups": {}}
        for table in tables:
            per_document["tasks"].update(table["tasks"])
            per_document["groups"].update(table["groups"])
    return Evidence(label=label, metrics={t: {"score": Measure(v, se)} for t, (v, se) in scores.items()},
                    versions={t: 1 for t in scores}, data_sources={t: dict(SOURCE) for t in scores},
                    group_subtasks=groups or {}, per_document=per_document)


def test_documents_pair_by_id_not_by_position():
    ids = [f"d{i}" for i in range(40)]
    base = [float(i % 2) for i in range(40)]
    cand = [1.0] * 40
    shuffled = list(range(40))
    random.Random(0).shuffle(shuffled)
    candidate = _evidence("c", [_table("t", [ids[i] for i in shuffled], [cand[i] for i in shuffled])], {"t": (1.0, 0)})
    baseline = _evidence("b", [_table("t", ids, base)], {"t": (0.5, 0.08)})
    (c_form, b_form, _), = strata("t", "score", candidate, baseline).parts
    gains = np.sum((c_form.counts[:, 0] == 1) & (b_form.counts[:, 0] == 0))
    assert gains == 20 and mcnemar(c_form.counts[:, 0], b_form.counts[:, 0]).details["losses"] == 0


def test_different_document_sets_are_not_paired_and_say_so():
    candidate = _evidence("c", [_table("t", ["a", "b", "c"], [1.0, 1.0, 0.0])], {"t": (0.67, 0.3)})
    baseline = _evidence("b", [_table("t", ["a", "b", "z"], [0.0, 1.0, 1.0])], {"t": (0.67, 0.3)})
    with pytest.raises(Unpaired, match=r"different documents \(1 only in the candidate, 1 only in the baseline, 2 shared\)") as info:
        strata("t", "score", candidate, baseline)
    assert info.value.intersection == ([1.0, 1.0], [0.0, 1.0])


def test_group_strata_follow_lm_evals_leaf_aggregation():
    groups = {"g": ["sub", "t3"], "sub": ["t1", "t2"]}
    tables_c, tables_b = [], []
    for task, n in (("t1", 10), ("t2", 30), ("t3", 20)):
        ids = [f"{task}-{i}" for i in range(n)]
        tables_c.append(_table(task, ids, [float(i % 3 == 0) for i in range(n)]))
        tables_b.append(_table(task, ids, [float(i % 2 == 0) for i in range(n)]))
    for weight_by_size in (False, True):
        aggregate = {"g": {"members": ["sub", "t3"], "aggregate": {"score": {"weight_by_size": weight_by_size}}}}
        tables_c[0]["groups"] = aggregate
        scores = {"g": (0.3, 0.1), "sub": (0.3, 0.1), "t1": (0, 0), "t2": (0, 0), "t3": (0, 0)}
        candidate = _evidence("c", tables_c, scores, groups)
        baseline = _evidence("b", tables_b, scores, groups)
        found = strata("g", "score", candidate, baseline)
        assert found.tasks == ["t1", "t2", "t3"]
        weights = [w for _, _, w in found.parts]
        assert weights == pytest.approx([10 / 60, 30 / 60, 20 / 60] if weight_by_size else [1 / 3] * 3)
        result = paired_test(found.parts, resamples=500)
        assert result.test == "stratified-paired-bootstrap" and result.n == 60


# ---------------------------------------------------------------- the gate on paired evidence


def _gate(rules, candidate, baseline, **top):
    return run_gate(parse_policy({"rules": rules, "bootstrap": {"resamples": 2000}, **top}), candidate, baseline)


def _binary_pair(n: int, gains: int, losses: int):
    ids = [f"d{i}" for i in range(n)]
    base = [float(i % 2) for i in range(n)]
    cand = list(base)
    zeros, ones = [i for i in range(n) if base[i] == 0], [i for i in range(n) if base[i] == 1]
    for i in zeros[:gains]:
        cand[i] = 1.0
    for i in ones[:losses]:
        cand[i] = 0.0
    c_mean, b_mean = sum(cand) / n, sum(base) / n
    se = lambda m: math.sqrt(m * (1 - m) / (n - 1))  # noqa: E731
    return (_evidence("c", [_table("t", ids, cand)], {"t": (c_mean, se(c_mean))}),
            _evidence("b", [_table("t", ids, base)], {"t": (b_mean, se(b_mean))}))


def test_max_drop_is_decided_by_mcnemar_and_reports_n_ci_p_and_detectable_effect():
    candidate, baseline = _binary_pair(220, 6, 24)  # accuracy drops by 0.082
    verdict = _gate([{"kind": "max_drop", "tasks": ["t"], "threshold": 0.02, "alpha": 0.05}], candidate, baseline)
    check = verdict.checks[0]
    assert not verdict.passed and check.inputs["test"] == "mcnemar-exact-midp"
    assert check.inputs["n"] == 220 and check.inputs["p"] < 0.01
    assert check.inputs["ci_low"] < -0.082 < check.inputs["ci_high"] < 0
    assert "mcnemar-exact-midp" in check.reason and "could not have been detected" in check.reason
    # the unpaired z-test would have let the same drop through
    z_verdict = _gate([{"kind": "max_drop", "tasks": ["t"], "threshold": 0.02, "alpha": 0.05, "allow": "unpaired"}],
                      _evidence("c", None, {"t": (candidate.metrics["t"]["score"].value, candidate.metrics["t"]["score"].stderr)}),
                      _evidence("b", None, {"t": (baseline.metrics["t"]["score"].value, baseline.metrics["t"]["score"].stderr)}))
    assert z_verdict.passed and "unpaired-z" in z_verdict.checks[0].inputs["test"]


def test_without_per_document_scores_a_test_fails_closed_unless_unpaired_is_allowed():
    candidate = _evidence("c", None, {"t": (0.70, 0.02)})
    baseline = _evidence("b", None, {"t": (0.60, 0.02)})
    rules = [{"kind": "min_gain", "tasks": ["t"], "threshold": 0.0, "significant": True}]
    closed = _gate(rules, candidate, baseline)
    assert not closed.passed and "[fail-closed: unpaired]" in closed.checks[0].reason
    assert "the candidate (c) has no per-document scores" in closed.checks[0].reason
    allowed = _gate(rules, candidate, baseline, allow=["unpaired"])
    assert allowed.passed and "unpaired-z" in allowed.checks[0].reason
    assert "unpaired: the candidate (c) has no per-document scores" in allowed.checks[0].reason


def test_different_documents_use_the_z_test_on_the_intersection_only_when_allowed():
    ids_c, ids_b = [f"d{i}" for i in range(60)], [f"d{i}" for i in range(10, 70)]
    candidate = _evidence("c", [_table("t", ids_c, [1.0] * 60)], {"t": (1.0, 0.0)})
    baseline = _evidence("b", [_table("t", ids_b, [float(i % 2) for i in range(60)])], {"t": (0.5, 0.065)})
    rules = [{"kind": "min_gain", "tasks": ["t"], "threshold": 0.0, "significant": True}]
    closed = _gate(rules, candidate, baseline)
    assert not closed.passed and "different documents" in closed.checks[0].reason
    allowed = _gate(rules, candidate, baseline, allow=["unpaired"])
    assert allowed.checks[0].inputs["test"] == "unpaired-z-intersection" and allowed.checks[0].inputs["n"] == 50


def test_underpowered_check_fails_closed():
    candidate, baseline = _binary_pair(40, 2, 2)
    rule = {"kind": "max_drop", "tasks": ["t"], "threshold": 0.05, "alpha": 0.05}
    assert _gate([rule], candidate, baseline).passed
    verdict = _gate([{**rule, "max_detectable_effect": 0.05}], candidate, baseline)
    assert not verdict.passed and "[fail-closed: underpowered]" in verdict.checks[0].reason
    big_c, big_b = _binary_pair(4000, 200, 200)
    assert _gate([{**rule, "max_detectable_effect": 0.05}], big_c, big_b).passed


def test_holm_correction_is_applied_across_the_policys_tests():
    # Two tasks, each gaining with p between alpha/2 and alpha: each passes alone,
    # neither survives Holm across the two.
    c1, b1 = _binary_pair(300, 19, 8)
    p_alone = mcnemar(*[np.array(e.per_document["tasks"]["t"]["metrics"]["score"]) for e in (c1, b1)]).p
    assert 0.025 < p_alone < 0.05
    for e in (c1, b1):
        e.per_document["tasks"]["u"] = e.per_document["tasks"]["t"]
        e.metrics["u"] = e.metrics["t"]
        e.versions["u"], e.data_sources["u"] = 1, dict(SOURCE)
    rules = [{"kind": "min_gain", "tasks": ["t", "u"], "threshold": 0.0, "significant": True}]
    assert _gate(rules, c1, b1).passed
    corrected = _gate(rules, c1, b1, correction="holm")
    assert not corrected.passed
    assert all(c.inputs["p_holm"] == pytest.approx(min(1, 2 * p_alone)) for c in corrected.checks)


def test_one_gate_run_tests_each_task_once_and_keeps_no_state_in_the_policy(monkeypatch):
    """Holm in one pass: a joint rule and a plain rule over the same two tasks ask for
    the same tests; each (task, metric, alpha) is resampled once per verdict, and the
    policy, used for a second verdict, gives the same one (nothing cached in it)."""
    import ecomharness.gate.significance as significance_module

    c1, b1 = _binary_pair(300, 19, 8)
    for e in (c1, b1):
        e.per_document["tasks"]["u"] = e.per_document["tasks"]["t"]
        e.metrics["u"] = e.metrics["t"]
        e.versions["u"], e.data_sources["u"] = 1, dict(SOURCE)
    gain = {"kind": "min_gain", "tasks": ["t", "u"], "threshold": 0.0, "significant": True}
    rules = [gain, {"kind": "joint", "parts": [{**gain, "name": "part_t", "tasks": ["t"]},
                                               {**gain, "name": "part_u", "tasks": ["u"]}]}]
    policy = parse_policy({"rules": rules, "bootstrap": {"resamples": 2000}, "correction": "holm"})
    made = []
    real = significance_module.paired_result
    monkeypatch.setattr(significance_module, "paired_result",
                        lambda task, *args: made.append(task) or real(task, *args))
    first = run_gate(policy, c1, b1)
    assert sorted(made) == ["t", "u"]
    # Four decisions rest on a p (two tasks, two rules): Holm over four, not over two.
    p_alone = first.checks[0].inputs["p"]
    assert first.checks[0].inputs["p_holm"] == pytest.approx(min(1, 4 * p_alone))
    parts = first.checks[2].inputs["parts"]
    assert [p["inputs"]["p_holm"] for p in parts] == pytest.approx([min(1, 4 * p_alone)] * 2)
    second = run_gate(policy, c1, b1)
    assert sorted(made) == ["t", "t", "u", "u"]
    assert [c.reason for c in second.checks] == [c.reason for c in first.checks]


# ---------------------------------------------------------------- simulation (slow)


def _simulate_binary(rng, n, p_base, p_disc, effect, sims):
    """Paired 0/1 outcomes: with probability p_disc a document is discordant, split
    between gains and losses so that the expected difference is ``effect``."""
    base = rng.random((sims, n)) < p_base
    disc = rng.random((sims, n)) < p_disc
    gain = rng.random((sims, n)) < (0.5 + effect / (2 * p_disc))
    cand = np.where(disc, np.where(gain, 1, 0), base)
    base = np.where(disc, 1 - np.where(gain, 1, 0), base)
    return cand.astype(float), base.astype(float)


@pytest.mark.slow
def test_type_one_error_of_mcnemar_and_bootstrap_is_near_alpha():
    rng = np.random.default_rng(11)
    sims = 2000
    cand, base = _simulate_binary(rng, 400, 0.5, 0.3, 0.0, sims)
    rate = np.mean([mcnemar(c, b).p < 0.05 for c, b in zip(cand, base)])
    assert 0.04 <= rate <= 0.06, rate
    # continuous: ROUGE-like scores, no true difference, correlated pairs
    shared = rng.random((sims, 200))
    c = np.clip(shared + rng.normal(0, 0.15, (sims, 200)), 0, 1)
    b = np.clip(shared + rng.normal(0, 0.15, (sims, 200)), 0, 1)
    rejections = [paired_bootstrap([(mean_form(x), mean_form(y), 1.0)], resamples=1000, seed=i).p < 0.05
                  for i, (x, y) in enumerate(zip(c, b))]
    assert 0.04 <= np.mean(rejections) <= 0.06, np.mean(rejections)


@pytest.mark.slow
def test_paired_tests_have_more_power_than_the_unpaired_z_test():
    rng = np.random.default_rng(12)
    cand, base = _simulate_binary(rng, 300, 0.5, 0.15, 0.05, 1000)
    paired = np.mean([mcnemar(c, b).p < 0.05 for c, b in zip(cand, base)])
    n = cand.shape[1]

    def z_p(c, b):
        se = math.sqrt(c.mean() * (1 - c.mean()) / (n - 1) + b.mean() * (1 - b.mean()) / (n - 1))
        return math.erfc(abs(c.mean() - b.mean()) / se / math.sqrt(2))

    unpaired = np.mean([z_p(c, b) < 0.05 for c, b in zip(cand, base)])
    assert paired > unpaired + 0.2, (paired, unpaired)
