"""The D-CPT law (Que et al., 2024) and its fit: validation loss as a function of model
size N, training tokens D and the share r of the corpus whose loss is modelled.

    L(N, D, r) = E + A / N^alpha + B * r^eta / D^beta + C / (r + eps)^gamma

General loss is fitted with r = the general share (1 - domain share), domain loss with
r = the domain share, as the paper does. Parameters are fitted in a space where every
one is free of sign trouble (E, A, B, C, eps through their logarithms) with bounds on
the exponents; the objective is the Huber loss of the log-loss residuals (Chinchilla's
choice, also the paper's), minimised by L-BFGS-B from several seeded starts with an
analytic gradient (checked against finite differences in tests/test_plan.py; a
finite-difference gradient would cost 8 to 10 objective evaluations a step).

eta may be negative (B r^eta / D^beta then reads as data scaling in the share's own
tokens, r D, the more so the closer eta is to -beta) unless an observation has r = 0
(a domain-only or general-only proxy), where r^eta would be infinite: then eta >= 0.
The share dependence at small r is the C term's, which eps keeps finite.

What a grid cannot identify is left out, and the fit says so (``Form.dropped``): one
model size leaves no N term (A/N^alpha is a constant, folded into E); one token budget
leaves no D exponent (B r^eta is fitted without /D^beta); fewer than 5 shares fix eps at
``EPS_FIXED`` instead of fitting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecomharness.errors import UserError

# Parameter order of the full vector; the fitted space holds logs of the scales.
PARAMETERS = ("E", "A", "alpha", "B", "beta", "eta", "C", "gamma", "eps")
_LOG_SCALED = {"E", "A", "B", "C", "eps"}
_BOUNDS = {"E": (-10.0, 5.0), "A": (-10.0, 15.0), "alpha": (0.0, 2.0), "B": (-10.0, 15.0), "beta": (0.0, 2.0),
           "eta": (0.0, 5.0), "C": (-12.0, 5.0), "gamma": (0.0, 3.0), "eps": (np.log(1e-4), np.log(100.0))}
EPS_FIXED = 0.01
# eps up to 100: a share profile close to linear over the measured shares (the demo's
# general loss) is C/(r + eps)^gamma with a large eps; capped at 1, the fit pressed
# against the bound and predicted a left-out share 2 points of relative error worse.
# eta's lower bound when no observation has r = 0.
ETA_NEGATIVE_FLOOR = -3.0
# The Huber delta on log-loss residuals: residuals under 1% are squared (a smooth
# objective), larger ones (a diverged proxy) weigh linearly. Chinchilla used 1e-3:
# there residuals of a few 0.1%, the noise of a proxy's held-out loss, are already in
# the linear part, where L-BFGS converges slowly (tests/test_plan.py's recommendation
# test: 82 s at 1e-3 against 55 s at 1e-2, same starts, one run each).
HUBER_DELTA = 1e-2
MIN_SHARES = 3
SHARES_FOR_EPS = 5


@dataclass(frozen=True)
class Form:
    """Which terms of the law a fit uses, and why the others were left out."""

    n_term: bool = True
    d_exponent: bool = True
    fit_eps: bool = True
    dropped: tuple[str, ...] = ()

    def free(self) -> tuple[str, ...]:
        """The parameters this form fits, in ``PARAMETERS`` order."""
        off = set()
        if not self.n_term:
            off |= {"A", "alpha"}
        if not self.d_exponent:
            off |= {"beta"}
        if not self.fit_eps:
            off |= {"eps"}
        return tuple(p for p in PARAMETERS if p not in off)

    def as_dict(self) -> dict:
        """The form as the fit's JSON keeps it."""
        return {"n_term": self.n_term, "d_exponent": self.d_exponent, "fit_eps": self.fit_eps,
                "dropped": list(self.dropped)}

    @classmethod
    def from_dict(cls, raw: dict) -> "Form":
        """The inverse of ``as_dict``."""
        return cls(bool(raw["n_term"]), bool(raw["d_exponent"]), bool(raw["fit_eps"]), tuple(raw.get("dropped", ())))


def choose_form(sizes: int, budgets: int, shares: int, observations: int) -> Form:
    """The richest form the grid identifies: ``sizes``, ``budgets`` and ``shares`` are the
    numbers of distinct model sizes, token budgets and shares measured. Raises
    ``UserError`` when even the smallest form has more parameters than observations."""
    if shares < MIN_SHARES:
        raise UserError(f"the observations hold {shares} distinct domain share(s); the share terms need at least "
                        f"{MIN_SHARES} (the plan's grid asks for 5)")
    dropped = []
    n_term = sizes >= 2
    if not n_term:
        dropped.append(f"N term (A/N^alpha): {sizes} model size measured, folded into E")
    d_exponent = budgets >= 2
    if not d_exponent:
        dropped.append(f"D exponent (beta): {budgets} token budget measured")
    fit_eps = shares >= SHARES_FOR_EPS
    if not fit_eps:
        dropped.append(f"eps fitted: {shares} shares measured (fewer than {SHARES_FOR_EPS}); fixed at {EPS_FIXED}")
    form = Form(n_term, d_exponent, fit_eps, tuple(dropped))
    if observations <= len(form.free()):
        raise UserError(f"{observations} observations cannot fit the {len(form.free())} parameters of the law "
                        f"({', '.join(form.free())}); measure more budgets or shares")
    return form


def _natural(theta: dict[str, float]) -> dict[str, float]:
    return {p: float(np.exp(v)) if p in _LOG_SCALED else float(v) for p, v in theta.items()}


def predict(params: dict[str, float], n: np.ndarray | float | None, d: np.ndarray | float,
            share: np.ndarray | float) -> np.ndarray:
    """The law at (N, D, r) for natural parameters ``params`` (a missing term's scale
    is 0 or absent). ``share`` is the share of the corpus whose loss is modelled."""
    d = np.asarray(d, dtype=float)
    r = np.asarray(share, dtype=float)
    out = params["E"] + params["C"] * (r + params["eps"]) ** (-params["gamma"])
    out = out + params["B"] * _power(r, params["eta"]) * d ** (-params.get("beta", 0.0))
    if params.get("A"):
        if n is None:
            raise UserError("this fit has an N term: give the model size (--model-params)")
        out = out + params["A"] * np.asarray(n, dtype=float) ** (-params["alpha"])
    return np.asarray(out, dtype=float)


def _power(r: np.ndarray, eta: float) -> np.ndarray:
    """r ** eta with 0 ** 0 = 1 and 0 ** eta = 0 for eta > 0 (numpy agrees; spelled out
    because the gradient below needs log r, which is not)."""
    return np.where(r > 0, np.power(np.maximum(r, 1e-300), eta), 1.0 if eta == 0 else 0.0)


@dataclass
class Fitted:
    """One fitted law: natural parameters, its form, and how well it fits."""

    params: dict[str, float]
    form: Form
    objective: float
    r_squared: float
    starts: int
    converged_starts: int

    def predict(self, n, d, share) -> np.ndarray:
        """The fitted law at (N, D, r)."""
        return predict(self.params, n if self.form.n_term else None, d, share)


@dataclass
class _Problem:
    n: np.ndarray
    d: np.ndarray
    r: np.ndarray
    y: np.ndarray
    form: Form
    free: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        self.free = self.form.free()
        self.log_n = np.log(self.n) if self.form.n_term else None
        self.log_d = np.log(self.d)
        self.log_r = np.log(np.where(self.r > 0, self.r, 1.0))
        self.log_y = np.log(self.y)

    def unpack(self, x: np.ndarray) -> dict[str, float]:
        theta = dict(zip(self.free, x))
        natural = _natural(theta)
        natural.setdefault("A", 0.0)
        natural.setdefault("alpha", 0.0)
        natural.setdefault("beta", 0.0)
        natural.setdefault("eps", EPS_FIXED)
        return natural

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        p = self.unpack(x)
        term_c = p["C"] * np.exp(-p["gamma"] * np.log(self.r + p["eps"]))
        term_b = p["B"] * _power(self.r, p["eta"]) * np.exp(-p["beta"] * self.log_d)
        pred = p["E"] + term_b + term_c
        term_a = None
        if self.form.n_term:
            term_a = p["A"] * np.exp(-p["alpha"] * self.log_n)
            pred = pred + term_a
        residual = np.log(pred) - self.log_y
        huber = np.where(np.abs(residual) <= HUBER_DELTA, 0.5 * residual ** 2,
                         HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA))
        weight = np.clip(residual, -HUBER_DELTA, HUBER_DELTA) / pred  # d huber / d pred
        partial = {
            "E": p["E"] * np.ones_like(pred),
            "B": term_b, "beta": -self.log_d * term_b, "eta": np.where(self.r > 0, self.log_r, 0.0) * term_b,
            "C": term_c, "gamma": -np.log(self.r + p["eps"]) * term_c,
            "eps": -p["gamma"] * term_c * p["eps"] / (self.r + p["eps"]),
        }
        if term_a is not None:
            partial.update(A=term_a, alpha=-self.log_n * term_a)
        grad = np.array([float(np.sum(weight * partial[name])) for name in self.free])
        return float(np.sum(huber)), grad

    def bounds(self) -> list[tuple[float, float]]:
        lowest_eta = ETA_NEGATIVE_FLOOR if np.all(self.r > 0) else 0.0
        return [(lowest_eta, _BOUNDS[name][1]) if name == "eta" else _BOUNDS[name] for name in self.free]


def _starts(problem: _Problem, count: int, seed: int) -> list[np.ndarray]:
    """Seeded starting points: the first anchored on the data (E near the lowest loss,
    the scales near the spread), the rest drawn uniformly inside the bounds of the
    exponents and around the anchor for the scales."""
    if count == 0:
        return []
    rng = np.random.default_rng(seed)
    low, spread = float(problem.y.min()), float(problem.y.max() - problem.y.min()) + 1e-6
    anchor = {"E": np.log(max(low * 0.8, 1e-4)), "A": np.log(spread * 10), "alpha": 0.3, "B": np.log(spread * 5),
              "beta": 0.3, "eta": 0.5, "C": np.log(spread * 0.1), "gamma": 0.5, "eps": np.log(0.05)}
    starts = [np.array([anchor[name] for name in problem.free])]
    for _ in range(count - 1):
        x = []
        for name in problem.free:
            lo, hi = _BOUNDS[name]
            if name in _LOG_SCALED:
                x.append(float(np.clip(anchor[name] + rng.normal(0, 2.0), lo, hi)))
            else:
                x.append(float(rng.uniform(lo, min(hi, 1.5))))
        starts.append(np.array(x))
    return starts


def fit_law(n: np.ndarray | None, d: np.ndarray, r: np.ndarray, y: np.ndarray, form: Form, *, starts: int = 8,
            seed: int = 0, warm: dict[str, float] | None = None) -> Fitted:
    """Fit the law to losses ``y`` at (``n``, ``d``, ``r``): the best of ``starts`` seeded
    L-BFGS-B runs (plus one from ``warm``, natural parameters of an earlier fit; with
    ``starts=0`` that one only)."""
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=float)
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise UserError("every loss must be a positive finite number to fit the law")
    n_arr = np.ones_like(y) if n is None else np.asarray(n, dtype=float)
    problem = _Problem(n_arr, np.asarray(d, dtype=float), np.asarray(r, dtype=float), y, form)
    points = _starts(problem, starts, seed)
    if warm is None and not points:
        raise UserError("fit_law: no starting point (starts=0 needs warm)")
    if warm is not None:
        points.insert(0, np.array([np.log(max(warm[name], 1e-300)) if name in _LOG_SCALED else warm[name]
                                   for name in problem.free]))
    best, converged = None, 0
    for x0 in points:
        result = minimize(problem.value_and_grad, x0, jac=True, method="L-BFGS-B", bounds=problem.bounds(),
                          options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9})
        if not np.isfinite(result.fun):
            continue
        converged += bool(result.success)
        if best is None or result.fun < best.fun:
            best = result
    if best is None:
        raise UserError("the law could not be fitted from any start (every objective was infinite)")
    params = problem.unpack(best.x)
    predicted = predict(params, n_arr if form.n_term else None, problem.d, problem.r)
    total = float(np.sum((y - y.mean()) ** 2))
    r_squared = 1.0 - float(np.sum((y - predicted) ** 2)) / total if total > 0 else float("nan")
    return Fitted(params, form, float(best.fun), r_squared, len(points), converged)
