"""Paired significance tests for two models scored on the same documents.

Candidate and baseline answer the same documents, so the per-document differences carry
the evidence; an unpaired test on two aggregate standard errors ignores that the two
scores move together and needs far more documents to see the same change.

- binary per-document metrics (accuracy, exact match): exact McNemar, mid-p, on the
  discordant pairs (mid-p keeps the type-I error near alpha; the plain exact test is
  conservative, about 0.03 at alpha 0.05 on a few hundred documents);
- every other metric, corpus-level ones included (ROUGE-L, document F1, macro F1,
  micro P/R/F1): a seeded paired bootstrap over documents (10,000 resamples by default),
  each resample recomputing the metric from summed per-document counts
  (``metrics.corpus``); for a per-document mean, a paired t-test and Wilcoxon's
  signed-rank test are reported beside it as cross-checks;
- groups: a stratified paired bootstrap, each member task resampled on its own
  documents and the members combined as the group aggregates them;
- a task whose documents are clustered (``metadata.cluster_key``): the paired
  bootstrap over clusters, each resample drawing whole clusters for both sides
  (evaluation/clusters.py), for binary metrics too, since McNemar counts documents as
  independent pairs; the result says how many clusters.

Each result carries n, the difference with its 95% interval (at the policy's alpha),
p, the test's name and the minimum detectable effect: the smallest true difference
this many documents would detect at alpha with 80% power, given the observed
discordance or variance.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from ecomharness.evaluation.clusters import cluster_weights
from ecomharness.metrics.corpus import CountForm, is_binary

POWER = 0.8
DEFAULT_RESAMPLES = 10_000
# Resamples are drawn in blocks of this many rows, so memory stays bounded (a block of
# 2,000 resamples x 1,000 documents is 16 MB of float64 weights).
BLOCK = 2_000


@dataclass
class PairedResult:
    """The outcome of one paired test."""

    test: str
    n: int
    difference: float  # candidate - baseline, on the full document set
    ci: tuple[float, float]
    p: float
    mde: float  # minimum detectable |difference| at alpha with 80% power
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy for a verdict's inputs."""
        return {"test": self.test, "n": self.n, "difference": self.difference, "ci_low": self.ci[0],
                "ci_high": self.ci[1], "p": self.p, "mde": self.mde, **self.details}


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2)


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (summed in log space)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)


def _binom_pmf(k: int, n: int) -> float:
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2))


def mcnemar(candidate: np.ndarray, baseline: np.ndarray, alpha: float = 0.05, mid_p: bool = True) -> PairedResult:
    """Exact McNemar test on paired 0/1 scores (two-sided; ``mid_p`` halves the
    probability of the observed count). The interval is the Wald interval of a
    difference of paired proportions."""
    c, b = np.asarray(candidate, float), np.asarray(baseline, float)
    n = len(c)
    gains = int(np.sum((c == 1) & (b == 0)))
    losses = int(np.sum((c == 0) & (b == 1)))
    discordant = gains + losses
    k = min(gains, losses)
    if discordant == 0:
        p = 1.0
    elif mid_p:
        p = min(1.0, 2 * (_binom_cdf(k - 1, discordant) + 0.5 * _binom_pmf(k, discordant)))
        if gains == losses:
            p = 1.0
    else:
        p = min(1.0, 2 * _binom_cdf(k, discordant))
    diff = (gains - losses) / n if n else 0.0
    se = math.sqrt(max(discordant - (gains - losses) ** 2 / n, 0.0)) / n if n else math.inf
    z = _z(alpha)
    # With no discordant pair observed the variance estimate is 0; one discordant pair
    # stands in for it, so the detectable effect is never reported as zero.
    p_disc = max(discordant, 1) / n if n else 1.0
    mde = (z + NormalDist().inv_cdf(POWER)) * math.sqrt(p_disc / n) if n else math.inf
    return PairedResult("mcnemar-exact-midp" if mid_p else "mcnemar-exact", n, diff, (diff - z * se, diff + z * se),
                        p, mde, {"gains": gains, "losses": losses, "ci_level": 1 - alpha})


def _rng(seed: int, label: str) -> np.random.Generator:
    # One stream per (seed, label): a task's result does not depend on which other
    # tasks the policy tests, or in which order.
    digest = hashlib.sha256(f"{seed}\0{label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _weights(draws: np.ndarray, n: int) -> np.ndarray:
    """Bootstrap draws (resamples x n document positions) as draw counts per document."""
    rows = len(draws)
    flat = (draws.astype(np.int64) + (np.arange(rows, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _stratum_differences(candidate: CountForm, baseline: CountForm, draws: np.ndarray) -> np.ndarray:
    if candidate.mean and baseline.mean:
        # A mean's resample is the mean of the drawn per-document differences: one
        # gather, no weight matrix.
        # float32 values, float64 sums: half the memory traffic, and per-document
        # differences lose nothing a p-value can show at 7 significant digits.
        d = (candidate.counts[:, 0] - baseline.counts[:, 0]).astype(np.float32)
        return d[draws].sum(axis=1, dtype=np.float64) / draws.shape[1]
    w = _weights(draws, len(candidate.counts))
    return candidate.value(w) - baseline.value(w)


def _cluster_differences(candidate: CountForm, baseline: CountForm, grouped, rows: int,
                         rng: np.random.Generator) -> np.ndarray:
    w = cluster_weights(rng, grouped[0], grouped[1], rows)
    if candidate.mean and baseline.mean:
        d = candidate.counts[:, 0] - baseline.counts[:, 0]
        return (w @ d) / w.sum(axis=1)
    return candidate.value(w) - baseline.value(w)


def _block(strata, rows: int, seed: int, label: str, index: int, clusters=None) -> np.ndarray:
    rng = _rng(seed, f"{label}\0{index}")
    total = np.zeros(rows)
    for position, (candidate, baseline, weight) in enumerate(strata):
        grouped = clusters[position] if clusters is not None else None
        if grouped is not None:
            total += weight * _cluster_differences(candidate, baseline, grouped, rows, rng)
            continue
        n = len(candidate.counts)
        # 16-bit draws are three times faster to generate than 32-bit ones.
        dtype = np.uint16 if n <= 1 << 16 else np.int64
        draws = rng.integers(0, n, size=(rows, n), dtype=dtype)
        total += weight * _stratum_differences(candidate, baseline, draws)
    return total


def bootstrap_differences(strata: list[tuple[CountForm, CountForm, float]], resamples: int, seed: int,
                          label: str, clusters: list | None = None) -> np.ndarray:
    """Resampled differences of ``sum(weight * (metric(candidate) - metric(baseline)))``
    over strata (one per task; each resampled on its own documents, the same draw for
    both sides): a task is one stratum of weight 1, a group one per member task.

    Resamples come in blocks, each with its own random stream derived from (seed,
    label, block): the result is the same however many threads draw them, and blocks
    run on every core (numpy releases the GIL while drawing and gathering). ``clusters``
    (per stratum ``(index, count)`` or None) makes a stratum draw whole clusters."""
    sizes = [min(BLOCK, resamples - begin) for begin in range(0, resamples, BLOCK)]
    workers = min(len(sizes), os.cpu_count() or 1)
    if workers <= 1:
        parts = [_block(strata, rows, seed, label, i, clusters) for i, rows in enumerate(sizes)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda item: _block(strata, item[1], seed, label, item[0], clusters),
                                  enumerate(sizes)))
    return np.concatenate(parts) if parts else np.zeros(0)


def one_document_se(strata: list[tuple[CountForm, CountForm, float]]) -> float:
    """What stands in for a bootstrap's standard error when the differences have no
    variance: the error if a single document had moved by one unit of its metric, as
    McNemar lets one discordant pair stand in when none was seen.

    Differences with no variance (the same model twice, every score 0 early in CPT,
    every document moving by the same amount) give a bootstrap deviation of 0, and a
    detectable effect of 0 would claim any change could have been seen. The unit is the
    largest per-document value either side shows (1 when all are 0) for a mean, and the
    metric's own size (at least 1) for a corpus metric; one document of n moves a mean
    by unit / n. The smallest stratum's floor is taken: one document, not one per task."""
    floors = []
    for candidate, baseline, weight in strata:
        n = len(candidate.counts)
        if n == 0:
            continue
        if candidate.mean and baseline.mean:
            unit = float(max(np.max(np.abs(candidate.counts[:, 0])), np.max(np.abs(baseline.counts[:, 0]))))
        else:
            unit = max(abs(candidate.value()), abs(baseline.value()))
            unit = unit if math.isfinite(unit) else 1.0
            unit = max(unit, 1.0)
        floors.append(abs(weight) * (unit or 1.0) / n)
    return min(floors) if floors else 0.0


def paired_bootstrap(strata: list[tuple[CountForm, CountForm, float]], alpha: float = 0.05,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0, label: str = "",
                     clusters: list | None = None) -> PairedResult:
    """Paired (stratified) bootstrap of the difference: percentile interval, and the
    two-sided p of the null-shifted distribution (how often a resampled difference lies
    at least as far from the observed one as the observed one lies from zero); by
    cluster where ``clusters`` gives a stratum's."""
    observed = float(sum(w * (c.value() - b.value()) for c, b, w in strata))
    deltas = bootstrap_differences(strata, resamples, seed, label, clusters)
    p = float((np.sum(np.abs(deltas - observed) >= abs(observed) - 1e-12) + 1) / (resamples + 1))
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    se = float(np.std(deltas, ddof=1))
    # No variance at all: one document's worth stands in, as one discordant pair does
    # for McNemar; any observed variance is the data's own and is kept.
    mde = (_z(alpha) + NormalDist().inv_cdf(POWER)) * (se if se > 1e-15 else one_document_se(strata))
    n = int(sum(len(c.counts) for c, _, _ in strata))
    name = "paired-bootstrap" if len(strata) == 1 else "stratified-paired-bootstrap"
    details = {"resamples": resamples, "seed": seed, "se": se, "ci_level": 1 - alpha}
    if clusters is not None and any(g is not None for g in clusters):
        name = name.replace("paired-bootstrap", "paired-cluster-bootstrap")
        details["clusters"] = int(sum(g[1] if g is not None else len(c.counts)
                                      for g, (c, _, _) in zip(clusters, strata)))
    return PairedResult(name, n, observed, (float(low), float(high)), min(p, 1.0), mde, details)


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction
    (modified Lentz); accurate to ~1e-12 for the arguments a t-test gives."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            numerator = 1.0
        elif i % 2 == 0:
            numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + numerator * d
        d = tiny if abs(d) < tiny else d
        d = 1.0 / d
        c = 1.0 + numerator / c
        c = tiny if abs(c) < tiny else c
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0)


def paired_t_p(d: np.ndarray) -> float | None:
    """Two-sided p of the paired t-test on differences ``d`` (None when undefined)."""
    n = len(d)
    sd = float(np.std(d, ddof=1)) if n >= 2 else 0.0
    if n < 2 or sd == 0:
        return None
    t = float(np.mean(d)) / (sd / math.sqrt(n))
    df = n - 1
    return _betainc(df / 2, 0.5, df / (df + t * t))


def wilcoxon_p(d: np.ndarray) -> float | None:
    """Two-sided p of Wilcoxon's signed-rank test on differences ``d``: zero differences
    dropped, tied magnitudes given their average rank, normal approximation with the tie
    correction (what scipy's ``wilcoxon(method="approx")`` computes)."""
    d = np.asarray(d, float)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return None
    magnitude = np.abs(d)
    _, inverse, counts = np.unique(magnitude, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    ranks = (upper - (counts - 1) / 2)[inverse]
    r_plus = float(ranks[d > 0].sum())
    mean = n * (n + 1) / 4
    variance = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(counts ** 3 - counts)) / 48
    if variance <= 0:
        return None
    z = (r_plus - mean) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def cross_checks(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank p-values of per-document differences."""
    d = np.asarray(candidate, float) - np.asarray(baseline, float)
    out: dict[str, float] = {}
    for name, p in (("p_paired_t", paired_t_p(d)), ("p_wilcoxon", wilcoxon_p(d))):
        if p is not None:
            out[name] = p
    return out


def paired_test(strata: list[tuple[CountForm, CountForm, float]], alpha: float = 0.05,
                resamples: int = DEFAULT_RESAMPLES, seed: int = 0, label: str = "",
                clusters: list | None = None) -> PairedResult:
    """The test a task's (or group's) metric gets: McNemar for one task's binary
    metric, else the paired bootstrap (with the t and Wilcoxon cross-checks for a
    per-document mean); the bootstrap over clusters whenever a stratum's documents are
    clustered (``clusters``, per stratum ``(index, count)`` or None)."""
    if clusters is not None and any(g is not None for g in clusters):
        return paired_bootstrap(strata, alpha, resamples, seed, label, clusters)
    if len(strata) == 1:
        candidate, baseline, _ = strata[0]
        if is_binary(candidate) and is_binary(baseline):
            return mcnemar(candidate.counts[:, 0], baseline.counts[:, 0], alpha)
    result = paired_bootstrap(strata, alpha, resamples, seed, label)
    if len(strata) == 1 and strata[0][0].mean and strata[0][1].mean:
        result.details.update(cross_checks(strata[0][0].counts[:, 0], strata[0][1].counts[:, 0]))
    return result


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (compare each to alpha)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def documents_needed(mde_now: float, n_now: int, target: float) -> int | None:
    """Documents needed for a minimum detectable effect of ``target``, scaling the one
    observed on ``n_now`` documents (the detectable effect shrinks as 1/sqrt(n))."""
    if target <= 0 or not math.isfinite(mde_now) or n_now <= 0:
        return None
    return int(math.ceil(n_now * (mde_now / target) ** 2))
