"""Fault injection, round two: per-document evidence is checked before it decides anything.

One test per defect of issue 33 (gate side). Each runs the real ``ecomharness gate`` /
``compare`` entry point in-process (``cli.main``), so the exit code is the one CI sees.
"""

from __future__ import annotations

import json
import math

import pytest

from ecomharness.cli import main
from ecomharness.evaluation import per_document

SOURCE = {"origin": "explicit", "source": "/data/x", "fingerprint": "abc", "documents": 90,
          "documents_hash": "d1", "fewshot_hash": "f1", "max_docs": 1000, "data_seed": 1234}
N = 90


def side(folder, values, task="ecom_icl_tig", metric="score", reported=None, aggregation="mean"):
    """A results file whose per-document sidecar holds ``values`` (hash consistent), and
    whose reported value is ``reported`` (default: the mean of ``values``)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = {"format": per_document.FORMAT, "version": per_document.VERSION, "groups": {},
             "tasks": {task: {"doc_ids": [f"d{i}" for i in range(len(values))], "filter": "none",
                              "metrics": {metric: values}, "aggregation": {metric: aggregation},
                              "higher_is_better": {metric: True}}}}
    if reported is None:
        finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        reported = sum(finite) / len(finite)
    payload = {
        "results": {task: {"alias": task, f"{metric},none": reported, f"{metric}_stderr,none": 0.01}},
        "versions": {task: 1.0},
        "n-samples": {task: {"original": len(values), "effective": len(values)}},
        "ecomharness": {"data_sources": {task: dict(SOURCE)},
                        "per_document": per_document.write(folder, "results", table)},
    }
    path = folder / "results_2026-01-01T00-00-00.json"
    path.write_text(json.dumps(payload))
    return str(path)


def policy(tmp_path, rule):
    path = tmp_path / "policy.yaml"
    path.write_text(f"rules: [{rule}]\n", encoding="utf-8")
    return str(path)


GAIN = "{kind: min_gain, tasks: [ecom_icl_tig], threshold: 0.0, significant: true}"
DROP = "{kind: max_drop, tasks: [ecom_icl_tig], threshold: 0.02, alpha: 0.05}"


def gate(tmp_path, rule, candidate, baseline):
    return main(["gate", "--policy", policy(tmp_path, rule), "--candidate", candidate, "--baseline", baseline,
                 "--json", str(tmp_path / "verdict.json")])


def verdict(tmp_path):
    return json.loads((tmp_path / "verdict.json").read_text())


def _scores(seed: int, shift: float = 0.0) -> list[float]:
    return [round(((i * 37 + seed * 11) % 100) / 100 * 0.8 + shift, 6) for i in range(N)]


# --- High 1: a non-finite per-document value never feeds a p-value ------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_per_document_value_is_an_input_error(tmp_path, capsys, bad):
    base = side(tmp_path / "b", _scores(1))
    values = _scores(1)
    values[5] = bad
    cand = side(tmp_path / "c", values, reported=sum(_scores(1)) / N)
    assert gate(tmp_path, GAIN, cand, base) == 2
    err = capsys.readouterr().err
    assert "tasks.ecom_icl_tig.metrics.score[5]" in err and "not a finite number" in err, err
    assert main(["compare", cand, base]) == 2


# --- High 2: the detectable effect is never zero ------------------------------------------

@pytest.mark.parametrize("shift", [0.0, 0.05])
def test_zero_variance_differences_have_a_detectable_effect_floor(tmp_path, shift):
    base = side(tmp_path / "b", _scores(1))
    cand = side(tmp_path / "c", _scores(1, shift))
    rule = "{kind: max_drop, tasks: [ecom_icl_tig], threshold: 0.1, alpha: 0.05, max_detectable_effect: 0.001}"
    assert gate(tmp_path, rule, cand, base) == 1
    check = verdict(tmp_path)["checks"][0]
    assert check["inputs"]["mde"] > 0.001 and "[fail-closed: underpowered]" in check["reason"], check


def test_all_zero_scores_on_both_sides_are_underpowered(tmp_path):
    base = side(tmp_path / "b", [0.0] * N)
    cand = side(tmp_path / "c", [0.0] * N)
    rule = "{kind: max_drop, tasks: [ecom_icl_tig], threshold: 0.1, max_detectable_effect: 0.001}"
    assert gate(tmp_path, rule, cand, base) == 1
    assert "underpowered" in verdict(tmp_path)["checks"][0]["reason"]


# --- High 3: the sidecar is checked against the results it belongs to ---------------------

def test_a_sidecar_that_disagrees_with_its_results_is_an_input_error(tmp_path, capsys):
    base = side(tmp_path / "b", [1.0] * N)
    cand = side(tmp_path / "c", [1.0] * N, reported=0.9)
    assert gate(tmp_path, DROP, cand, base) == 2
    err = capsys.readouterr().err
    assert "per-document" in err and "0.9" in err and "recomputed" in err, err


def test_a_per_document_score_outside_its_range_is_an_input_error(tmp_path, capsys):
    base = side(tmp_path / "b", _scores(1), metric="acc")
    values = _scores(1)
    values[3] = 2.0
    cand = side(tmp_path / "c", values, metric="acc")
    assert gate(tmp_path, DROP.replace("threshold", "metric: acc, threshold"), cand, base) == 2
    err = capsys.readouterr().err
    assert "metrics.acc[3]" in err and "between 0 and 1" in err, err


# --- Medium 11: misleading reasons -----------------------------------------------------------

def test_a_string_in_a_sidecar_is_an_input_error_naming_the_value(tmp_path, capsys):
    base = side(tmp_path / "b", _scores(1))
    values = _scores(1)
    values[7] = "0.5"
    cand = side(tmp_path / "c", values, reported=sum(_scores(1)) / N)
    assert gate(tmp_path, DROP, cand, base) == 2
    err = capsys.readouterr().err
    assert "metrics.score[7]" in err and "'0.5'" in err, err


def test_the_holm_reason_shows_the_raw_p_beside_the_adjusted_one(tmp_path):
    base = side(tmp_path / "b", _scores(1))
    cand = side(tmp_path / "c", _scores(2))
    path = tmp_path / "policy.yaml"
    path.write_text("correction: holm\nrules:\n"
                    "  - {name: a, kind: max_drop, tasks: [ecom_icl_tig], threshold: 0.0, alpha: 0.05}\n"
                    "  - {name: b, kind: min_gain, tasks: [ecom_icl_tig], threshold: -1.0, significant: true}\n")
    main(["gate", "--policy", str(path), "--candidate", cand, "--baseline", base, "--json", str(tmp_path / "v.json")])
    checks = json.loads((tmp_path / "v.json").read_text())["checks"]
    for check in checks:
        raw, adjusted = check["inputs"]["p"], check["inputs"]["p_holm"]
        assert f"p={raw:.3g}" in check["reason"] and f"Holm-adjusted p={adjusted:.3g}" in check["reason"], check


# --- Medium 4: no hang on a huge bootstrap -------------------------------------------------

def test_a_bootstrap_too_large_to_finish_is_refused(tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text("bootstrap: {resamples: 100000000000}\nrules: [" + DROP + "]\n")
    base = side(tmp_path / "b", _scores(1))
    assert main(["gate", "--policy", str(path), "--candidate", base, "--baseline", base]) == 2
    assert "bootstrap.resamples" in capsys.readouterr().err
