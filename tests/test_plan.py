"""Mixture planning: the D-CPT law's fit, reduced forms, prediction, the critical
mixture ratio, observation files and the `plan` command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import check_grad

from ecomharness.cli import main
from ecomharness.errors import UserError
from ecomharness.plan.fit import critical_share, fit_observations, law_share, load_fit, predict_losses, recommend
from ecomharness.plan.law import EPS_FIXED, Form, _Problem, choose_form, predict
from ecomharness.plan.observations import Observation, read_jsonl

# Two laws in the range a small proxy shows (bits per byte): general loss rises as the
# general share falls, domain loss falls as the domain share rises; both fall with tokens.
TRUE = {
    "general": {"E": 0.9, "A": 30.0, "alpha": 0.35, "B": 25.0, "beta": 0.3, "eta": 0.1, "C": 0.25, "gamma": 0.5,
                "eps": 0.05},
    "domain": {"E": 0.5, "A": 25.0, "alpha": 0.3, "B": 60.0, "beta": 0.38, "eta": 0.2, "C": 0.3, "gamma": 0.6,
               "eps": 0.04},
}
SHARES = (0.05, 0.15, 0.3, 0.5, 0.7, 0.9)
BUDGETS = (2e5, 4e5, 8e5, 1.6e6)


def _observations(shares=SHARES, budgets=BUDGETS, sizes=(1e6,), noise=0.003, seed=0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    found = []
    for n in sizes:
        for s in shares:
            for d in budgets:
                losses = {side: float(predict(TRUE[side], n, d, law_share(side, s)) * np.exp(rng.normal(0, noise)))
                          for side in TRUE}
                found.append(Observation(n, d, s, losses["general"], losses["domain"]))
    return found


def _true(side: str, n, d, s) -> float:
    return float(predict(TRUE[side], n, d, law_share(side, s)))


def test_the_gradient_is_the_objectives_derivative():
    obs = _observations(sizes=(1e6, 4e6))
    n = np.array([o.model_params for o in obs])
    d = np.array([o.tokens for o in obs])
    s = np.array([o.domain_share for o in obs])
    y = np.array([o.domain_loss for o in obs])
    problem = _Problem(n, d, s, y, Form())
    for x in (np.array([0.0, 2.0, 0.3, 3.0, 0.4, 0.5, -2.0, 0.6, -3.0]),
              np.array([-0.5, 4.0, 0.2, 5.0, 0.2, 1.2, -1.0, 1.1, -2.0])):
        error = check_grad(lambda v: problem.value_and_grad(v)[0], lambda v: problem.value_and_grad(v)[1], x)
        assert error < 1e-6 * max(1.0, np.linalg.norm(problem.value_and_grad(x)[1]))


def test_reduced_forms_follow_what_the_grid_measures():
    assert choose_form(2, 3, 5, 30) == Form(True, True, True, ())
    one_size = choose_form(1, 3, 5, 15)
    assert not one_size.n_term and one_size.d_exponent and one_size.fit_eps
    assert "A" not in one_size.free() and "alpha" not in one_size.free()
    assert "N term" in one_size.dropped[0]
    one_budget = choose_form(1, 1, 5, 5 * 2)
    assert not one_budget.d_exponent and "beta" not in one_budget.free()
    few_shares = choose_form(1, 4, 4, 16)
    assert not few_shares.fit_eps and "eps" not in few_shares.free() and str(EPS_FIXED) in few_shares.dropped[-1]
    with pytest.raises(UserError, match="at least 3"):
        choose_form(1, 4, 2, 8)
    with pytest.raises(UserError, match="observations cannot fit"):
        choose_form(2, 2, 5, 8)


def test_a_law_with_known_parameters_is_recovered_within_two_percent_at_held_out_points():
    """Fitted on 5 shares x 4 budgets x 2 sizes with 0.3% noise; predicted at shares
    and budgets (and a size) that were not measured."""
    fit = fit_observations(_observations(sizes=(1e6, 4e6)), log=lambda *_: None)
    assert fit["form"]["dropped"] == []
    loaded = load_fit(json.loads(json.dumps(fit)), "fit")
    for s, d, n in ((0.4, 3e5, 1e6), (0.6, 1.2e6, 4e6), (0.2, 3.2e6, 4e6), (0.8, 6e5, 2e6), (0.1, 1e6, 2e6)):
        got = predict_losses(loaded, s, d, n)
        for side in ("general", "domain"):
            truth = _true(side, n, d, s)
            assert abs(got[f"{side}_loss"] - truth) / truth < 0.02, (side, s, d, n, got, truth)
    assert predict_losses(loaded, 0.2, 3.2e6, 4e6)["extrapolated"] == ["tokens 3.2e+06 outside the measured 200000..1.6e+06"]
    for side in ("general", "domain"):
        assert fit[side]["r_squared"] > 0.99
        assert fit[side]["loso"]["mean_abs_rel_error"] < 0.02


def test_one_model_size_fits_the_reduced_form_and_refuses_another_size():
    fit = load_fit(fit_observations(_observations(), log=lambda *_: None), "fit")
    assert not fit.form.n_term
    truth = _true("domain", 1e6, 1e6, 0.4)
    assert abs(predict_losses(fit, 0.4, 1e6)["domain_loss"] - truth) / truth < 0.02
    with pytest.raises(UserError, match="no N term"):
        predict_losses(fit, 0.4, 1e6, model_params=2e6)


def test_the_critical_share_is_the_largest_whose_general_loss_stays_within_tolerance():
    fit = load_fit(fit_observations(_observations(), log=lambda *_: None), "fit")
    result = recommend(fit, 1.6e6, 0.05, bootstrap=40, seed=1)
    share = result["domain_share"]
    low = fit.ranges["domain_share"][0]
    # By the true law: the general loss at the recommended share is within 5% of its value
    # at the smallest share, and a share 0.05 larger is not (the fit is within a few 0.01).
    reference = _true("general", 1e6, 1.6e6, low)
    assert _true("general", 1e6, 1.6e6, share - 0.03) <= reference * 1.05
    assert _true("general", 1e6, 1.6e6, share + 0.05) > reference * 1.05
    assert result["interval"] is not None and result["interval"][0] <= share <= result["interval"][1]
    assert result["bootstrap"]["chosen"] + result["bootstrap"]["no_share"] + result["bootstrap"]["unfitted"] == 40


def test_no_share_qualifies_when_any_domain_data_costs_more_than_the_tolerance():
    params = {side: dict(TRUE[side], A=0.0) for side in TRUE}
    share, reason, _ = critical_share(params, Form(False, True, True), 0.05, 0.9, 1e6, None, 0.0)
    assert share is None and "at every larger share" in reason


def test_bad_observation_files_name_the_line_and_field(tmp_path):
    path = tmp_path / "obs.jsonl"
    good = {"model_params": 1e6, "tokens": 1e5, "domain_share": 0.3, "general_loss": 1.2, "domain_loss": 0.9}
    cases = [
        ({**good, "domain_share": 1.5}, "line 2|:2: field 'domain_share': expected a share"),
        ({k: v for k, v in good.items() if k != "tokens"}, ":2: missing field 'tokens'"),
        ({**good, "general_loss": "1.2"}, ":2: field 'general_loss': expected a finite number"),
        ({**good, "domain_loss": 0}, ":2: field 'domain_loss': expected a number above 0"),
    ]
    for bad, message in cases:
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(UserError, match=message.split("|")[-1]):
            read_jsonl(path)
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(UserError, match=r"obs.jsonl:2: not JSON"):
        read_jsonl(path)


def test_the_command_line_fits_predicts_and_recommends(tmp_path, capsys):
    path = tmp_path / "obs.jsonl"
    path.write_text("".join(json.dumps(o.as_json()) + "\n" for o in _observations()))
    fit_path = tmp_path / "fit.json"
    assert main(["plan", "fit", str(path), "--output", str(fit_path), "--starts", "8"]) == 0
    assert "N term (A/N^alpha): 1 model size measured" in capsys.readouterr().out
    assert main(["plan", "predict", str(fit_path), "--domain-share", "0.4", "--tokens", "1e6", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert abs(predicted["domain_loss"] - _true("domain", 1e6, 1e6, 0.4)) / _true("domain", 1e6, 1e6, 0.4) < 0.02
    assert main(["plan", "recommend", str(fit_path), "--tokens", "1.6e6", "--tolerance", "0.05", "--bootstrap", "20",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.05 < result["domain_share"] < 0.9
    assert (tmp_path / "recommend" / "curves.png").stat().st_size > 10_000
    table = (tmp_path / "recommend" / "table.md").read_text()
    assert table.count("\n| ") == len(_observations()) + 1  # header + one row per observation
    # The first budget left out: counted, and the fit made from the rest.
    later = tmp_path / "later.json"
    assert main(["plan", "fit", str(path), "--output", str(later), "--starts", "2", "--min-tokens", "3e5"]) == 0
    assert "6 observation(s) under 300,000 tokens left out" in capsys.readouterr().out
    assert json.loads(later.read_text())["left_out"] == len(SHARES)
    assert min(o["tokens"] for o in json.loads(later.read_text())["observations"]) == 4e5
    # Bad input: exit 2 with the field named.
    assert main(["plan", "fit", str(path), "--min-tokens", "1e9"]) == 2
    assert "leaves no observation to fit" in capsys.readouterr().err
    assert main(["plan", "predict", str(fit_path), "--domain-share", "0.4", "--tokens", "-1"]) == 2
    assert "--tokens: expected a number above 0" in capsys.readouterr().err
    assert main(["plan", "recommend", str(path), "--tokens", "1e6", "--tolerance", "0.01"]) == 2
    assert "not a readable `plan fit` output" in capsys.readouterr().err
