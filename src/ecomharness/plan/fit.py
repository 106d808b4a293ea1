"""``plan fit``, ``plan predict``, ``plan recommend``: the law fitted to observations,
read back, and turned into a domain share.

The fit's JSON keeps everything the other two need: the observations, the form, both
laws' parameters, R^2 and the leave-one-share-out errors (each share's observations
predicted by a law fitted without them: how well the law predicts a share nobody ran).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ecomharness.errors import UserError
from ecomharness.plan.law import MIN_SHARES, Fitted, Form, choose_form, fit_law, predict
from ecomharness.plan.observations import Observation, check_observation

FIT_VERSION = 1
SIDES = ("general", "domain")
# A share's step when recommend scans the measured range.
SHARE_STEP = 0.001


def law_share(side: str, domain_share):
    """The share the law of ``side`` is written in: the general share for general loss,
    the domain share for domain loss (the D-CPT law's r_g and r_d)."""
    return 1.0 - np.asarray(domain_share, dtype=float) if side == "general" else np.asarray(domain_share, dtype=float)


def _columns(observations: list[Observation]):
    n = np.array([o.model_params for o in observations])
    d = np.array([o.tokens for o in observations])
    s = np.array([o.domain_share for o in observations])
    losses = {side: np.array([getattr(o, f"{side}_loss") for o in observations]) for side in SIDES}
    return n, d, s, losses


def grid_form(observations: list[Observation]) -> Form:
    """The law's form for these observations (``law.choose_form`` on their distinct
    sizes, budgets and shares)."""
    n, d, s, _ = _columns(observations)
    return choose_form(len(set(n)), len(set(d)), len(set(s)), len(observations))


def fit_observations(observations: list[Observation], *, starts: int = 8, seed: int = 0, min_tokens: float = 0.0,
                     log=print) -> dict:
    """Fit both laws and measure leave-one-share-out errors; returns the fit's JSON.
    Observations under ``min_tokens`` are left out (counted in the JSON and on the
    console): a CPT run's first budgets can sit in the transient of re-warming the
    learning rate, which the law does not describe."""
    if not math.isfinite(min_tokens) or min_tokens < 0:
        raise UserError(f"--min-tokens: expected a number >= 0, got {min_tokens}")
    left_out = [o for o in observations if o.tokens < min_tokens]
    observations = [o for o in observations if o.tokens >= min_tokens]
    if left_out:
        log(f"[plan] {len(left_out)} observation(s) under {min_tokens:,.0f} tokens left out; {len(observations)} fitted")
    if not observations:
        raise UserError(f"--min-tokens {min_tokens:g} leaves no observation to fit")
    form = grid_form(observations)
    n, d, s, losses = _columns(observations)
    out = {"version": FIT_VERSION, "form": form.as_dict(), "seed": seed, "starts": starts,
           "min_tokens": min_tokens, "left_out": len(left_out),
           "observations": [o.as_json() for o in observations],
           "ranges": {"domain_share": [float(s.min()), float(s.max())], "tokens": [float(d.min()), float(d.max())],
                      "model_params": [float(n.min()), float(n.max())]}}
    for side in SIDES:
        fitted = fit_law(n if form.n_term else None, d, law_share(side, s), losses[side], form, starts=starts,
                         seed=seed)
        loso = leave_one_share_out(observations, side, form, fitted, seed)
        out[side] = {"params": fitted.params, "r_squared": fitted.r_squared, "huber": fitted.objective,
                     "starts": fitted.starts, "converged_starts": fitted.converged_starts, "loso": loso}
        log(f"[plan] {side} loss: R^2 {fitted.r_squared:.4f}; leave-one-share-out mean absolute relative error "
            f"{loso['mean_abs_rel_error']:.2%} (worst share {loso['worst_share']:g}: "
            f"{loso['by_share'][_share_key(loso['worst_share'])]:.2%})")
    return out


def _share_key(share: float) -> str:
    return f"{share:g}"


def leave_one_share_out(observations: list[Observation], side: str, form: Form, full: Fitted, seed: int) -> dict:
    """Each share's observations predicted by the law fitted to the other shares (the
    same form, started from the full fit and from the data-anchored point)."""
    n, d, s, losses = _columns(observations)
    errors, by_share = [], {}
    for share in sorted(set(s)):
        keep = s != share
        fitted = fit_law(n[keep] if form.n_term else None, d[keep], law_share(side, s[keep]), losses[side][keep], form,
                         starts=1, seed=seed, warm=full.params)
        held = ~keep
        predicted = fitted.predict(n[held] if form.n_term else None, d[held], law_share(side, s[held]))
        relative = np.abs(predicted - losses[side][held]) / losses[side][held]
        by_share[_share_key(float(share))] = float(relative.mean())
        errors.extend(relative.tolist())
    worst = max(by_share, key=by_share.get)
    return {"mean_abs_rel_error": float(np.mean(errors)), "by_share": by_share, "worst_share": float(worst)}


@dataclass
class LoadedFit:
    """A fit read back from its JSON."""

    form: Form
    params: dict[str, dict[str, float]]
    observations: list[Observation]
    ranges: dict
    raw: dict

    def loss(self, side: str, domain_share, tokens, model_params=None) -> np.ndarray:
        """Predicted loss of ``side`` at the given domain share(s), tokens and size."""
        return predict(self.params[side], model_params if self.form.n_term else None, tokens,
                       law_share(side, domain_share))


def load_fit(raw: dict, where: str) -> LoadedFit:
    """A fit's JSON checked and read; ``UserError`` naming ``where`` otherwise."""
    if not isinstance(raw, dict) or raw.get("version") != FIT_VERSION:
        raise UserError(f"{where}: not a `plan fit` output (version {FIT_VERSION} expected)")
    try:
        form = Form.from_dict(raw["form"])
        params = {side: {k: float(v) for k, v in raw[side]["params"].items()} for side in SIDES}
        observations = [check_observation(o, f"{where}: observations[{i}]") for i, o in enumerate(raw["observations"])]
        ranges = raw["ranges"]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: a `plan fit` output with a missing or malformed field ({exc})") from exc
    return LoadedFit(form, params, observations, ranges, raw)


def _check_size(fit: LoadedFit, model_params: float | None) -> float | None:
    if fit.form.n_term and model_params is None:
        raise UserError("the fit has an N term (several model sizes): give --model-params")
    if not fit.form.n_term and model_params is not None:
        low = fit.ranges["model_params"][0]
        raise UserError(f"the fit has no N term (one model size measured, {low:,.0f} parameters): it cannot predict "
                        "another size; leave --model-params out")
    if model_params is not None and (not math.isfinite(model_params) or model_params <= 0):
        raise UserError(f"--model-params: expected a number above 0, got {model_params}")
    return model_params


def _check_positive(value: float, flag: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag}: expected a number above 0, got {value}")


def predict_losses(fit: LoadedFit, domain_share: float, tokens: float, model_params: float | None = None) -> dict:
    """Predicted general and domain loss at one point, and whether it lies outside
    what was measured (an extrapolation)."""
    if not 0 <= domain_share <= 1:
        raise UserError(f"--domain-share: expected a share from 0 to 1, got {domain_share}")
    _check_positive(tokens, "--tokens")
    model_params = _check_size(fit, model_params)
    outside = []
    for name, value in (("domain_share", domain_share), ("tokens", tokens), ("model_params", model_params)):
        low, high = fit.ranges[name]
        if value is not None and not low <= value <= high:
            outside.append(f"{name} {value:g} outside the measured {low:g}..{high:g}")
    losses = {f"{side}_loss": float(fit.loss(side, domain_share, tokens, model_params)) for side in SIDES}
    for name, value in losses.items():
        if not math.isfinite(value):  # r^eta with eta < 0 at a share of 0
            raise UserError(f"the fitted law of {name.replace('_', ' ')} is infinite at domain share {domain_share:g}: "
                            "its share was never 0 in the observations, and the fit does not reach it")
    return {"domain_share": domain_share, "tokens": tokens, "model_params": model_params, **losses,
            "extrapolated": outside}


def critical_share(params: dict[str, dict], form: Form, low: float, high: float, tokens: float,
                   model_params: float | None, tolerance: float) -> tuple[float | None, str, dict]:
    """The CMR: over the measured shares ``low``..``high``, the domain share with the
    lowest predicted domain loss among those whose general loss stays within
    ``tolerance`` (relative) of its value at ``low``. Returns (share or None, reason, the
    curves it was chosen on)."""
    shares = np.round(np.arange(low, high + SHARE_STEP / 2, SHARE_STEP), 6)
    n = model_params if form.n_term else None
    general = predict(params["general"], n, tokens, law_share("general", shares))
    domain = predict(params["domain"], n, tokens, law_share("domain", shares))
    limit = general[0] * (1 + tolerance)
    allowed = general <= limit
    curves = {"shares": shares, "general": general, "domain": domain, "limit": float(limit)}
    if not allowed[1:].any():
        return None, (f"general loss rises above {limit:.4f} ({tolerance:.1%} over its {general[0]:.4f} at domain share "
                      f"{low:g}) at every larger share"), curves
    candidates = np.flatnonzero(allowed)
    best = candidates[int(np.argmin(domain[candidates]))]
    reason = ("the largest share whose general loss stays within the tolerance" if best == candidates.max()
              else "domain loss is lowest here among the shares within the tolerance")
    return float(shares[best]), reason, curves


def recommend(fit: LoadedFit, tokens: float, tolerance: float, model_params: float | None = None,
              bootstrap: int = 200, seed: int = 0) -> dict:
    """The critical mixture ratio at ``tokens`` (and size), with a bootstrap interval:
    observations resampled with replacement, both laws refitted (warm-started from the
    fit), the share chosen again. Resamples that cannot be fitted, or where no share
    qualifies, are counted, not hidden."""
    _check_positive(tokens, "--tokens")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise UserError(f"--tolerance: expected a relative tolerance >= 0 (0.01 is 1%), got {tolerance}")
    if bootstrap < 0:
        raise UserError(f"--bootstrap: expected a number of resamples >= 0, got {bootstrap}")
    model_params = _check_size(fit, model_params)
    low, high = fit.ranges["domain_share"]
    share, reason, curves = critical_share(fit.params, fit.form, low, high, tokens, model_params, tolerance)
    drawn, failed, none = [], 0, 0
    rng = np.random.default_rng(seed)
    n, d, s, losses = _columns(fit.observations)
    for _ in range(bootstrap):
        pick = rng.integers(0, len(s), len(s))
        if len(set(s[pick])) < MIN_SHARES:  # the share terms are not identified by this resample
            failed += 1
            continue
        try:  # the fit's own form: warm-started, a resample only moves the optimum a little
            params = {side: fit_law(n[pick] if fit.form.n_term else None, d[pick], law_share(side, s[pick]),
                                    losses[side][pick], fit.form, starts=0, seed=seed, warm=fit.params[side]).params
                      for side in SIDES}
        except UserError:
            failed += 1
            continue
        again, _, _ = critical_share(params, fit.form, low, high, tokens, model_params, tolerance)
        if again is None:
            none += 1
        else:
            drawn.append(again)
    interval = [float(np.percentile(drawn, 2.5)), float(np.percentile(drawn, 97.5))] if len(drawn) >= 20 else None
    chosen = {} if share is None else {
        "general_loss": float(fit.loss("general", share, tokens, model_params)),
        "domain_loss": float(fit.loss("domain", share, tokens, model_params))}
    return {"domain_share": share, "reason": reason, "tokens": tokens, "model_params": model_params,
            "tolerance": tolerance, "reference_share": low, "reference_general_loss": float(curves["general"][0]),
            "general_loss_limit": curves["limit"], **chosen, "interval": interval,
            "bootstrap": {"resamples": bootstrap, "chosen": len(drawn), "no_share": none, "unfitted": failed,
                          "seed": seed},
            "_curves": curves}
