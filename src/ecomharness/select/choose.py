"""Combine scores and choose documents: average rank or weights; hard or soft sampling.

``combine`` follows the Efficient-CPT paper's "-com" variant by default: each score is
turned into its rank (0 = worst, 1 = best, by each scorer's direction), and the ranks
are averaged (optionally weighted). ``choose`` keeps the top-k (hard) or draws k
documents without replacement with probability proportional to the tempered combined
score (soft), seeded.
"""

from __future__ import annotations

import numpy as np

from ecomharness.errors import UserError


def ranks(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Scores as ranks in [0, 1] (ties share the mean rank); 1 is the best."""
    order = np.argsort(scores if higher_is_better else -scores, kind="stable")
    r = np.empty(len(scores))
    r[order] = np.arange(len(scores))
    # average ties so that equal scores get equal ranks
    values, inverse = np.unique(scores, return_inverse=True)
    sums = np.bincount(inverse, weights=r)
    counts = np.bincount(inverse)
    r = (sums / counts)[inverse]
    return r / max(len(scores) - 1, 1)


def combine(columns: dict[str, np.ndarray], directions: dict[str, bool], weights: dict[str, float] | None = None,
            method: str = "rank") -> np.ndarray:
    """One combined score per document from several scorers' columns."""
    if not columns:
        raise UserError("selection needs at least one scorer")
    weights = weights or {name: 1.0 for name in columns}
    total = sum(weights[name] for name in columns)
    combined = np.zeros(len(next(iter(columns.values()))))
    for name, values in columns.items():
        if method == "rank":
            part = ranks(values, directions[name])
        elif method == "weights":
            std = values.std() or 1.0
            part = (values - values.mean()) / std * (1 if directions[name] else -1)
        else:
            raise UserError(f"select.combine: expected rank or weights, got {method!r}")
        combined += weights[name] * part
    return combined / total


def choose(scores: np.ndarray, k: int, mode: str = "hard", temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """Indices of the chosen documents, in corpus order.

    hard: the ``k`` best. soft: ``k`` draws without replacement with probability
    proportional to ``(score - min + eps) ** (1 / temperature)``.
    """
    n = len(scores)
    k = max(0, min(k, n))
    if mode == "hard":
        picked = np.argsort(-scores, kind="stable")[:k]
    elif mode == "soft":
        if temperature <= 0:
            raise UserError("select.sampling.temperature must be positive")
        weights = (scores - scores.min() + 1e-6) ** (1.0 / temperature)
        picked = np.random.default_rng(seed).choice(n, size=k, replace=False, p=weights / weights.sum())
    else:
        raise UserError(f"select.sampling.mode: expected hard or soft, got {mode!r}")
    return np.sort(picked)
