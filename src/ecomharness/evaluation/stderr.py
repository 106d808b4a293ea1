"""Standard errors lm-eval leaves out: a bootstrap over documents.

lm-eval reports a stderr for a ``mean`` aggregation and bootstraps a few built-in
corpus metrics; for any other corpus-level aggregation (corpus F1 ``ie_f1``, macro F1
``cls_macro_f1``, a plugin's own such as Shopping MMLU's skill score) it writes "N/A",
and so does every group holding such a task. ``fill_bootstrap_stderr`` computes those
from the per-document table (``per_document.collect``): each resample draws the
documents with replacement and applies the task's own aggregation. Where ecomharness
has the aggregation's count form (``metrics/corpus.py``) a resample is one matrix
product; otherwise the aggregation function itself runs per resample, with fewer
resamples. Groups then get lm-eval 0.4.13's own group stderr over their leaf tasks
(pooled when weighted by size, else that of the unweighted mean). Every value filled
in is listed, with the resamples and seed, so a reader knows which stderrs lm-eval
computed and which ecomharness did.

A task whose documents are clustered (``metadata.cluster_key``, evaluation/clusters.py)
gets every stderr replaced, lm-eval's own included, which treat documents as
independent: a mean's by the cluster-robust formula, any other aggregation's by a
bootstrap over clusters; the clusters are counted in what is returned (``clustered``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ecomharness.evaluation import clusters
from ecomharness.metrics.corpus import count_form

log = logging.getLogger("ecomharness.evaluation")

RESAMPLES = 1000  # with a count form: one matrix product each
RESAMPLES_SLOW = 200  # running the aggregation function itself
SEED = 1234


def _missing(value: Any) -> bool:
    return value is None or value == "N/A" or (isinstance(value, float) and math.isnan(value))


def _bootstrap(aggregation: str, values: list, rng: np.random.Generator,
               clustered: tuple[np.ndarray, int] | None = None) -> tuple[float, int] | None:
    n = len(values)
    if n < 2 or any(v is None for v in values):
        return None
    form = count_form(aggregation, values)
    if clustered is not None:
        index, count = clustered
        if form is None or count < 2:  # no count form: no cluster resampling either
            return None
        if form.mean:
            return clusters.cluster_robust_se(form.counts[:, 0], index, count), 0
        weights = clusters.cluster_weights(rng, index, count, RESAMPLES)
    elif form is not None:
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=RESAMPLES).astype(np.float64)
    if form is not None:
        with np.errstate(invalid="ignore"):  # inf values give NaN, which the caller leaves out
            stats = np.asarray(form.value(weights), dtype=np.float64)
            return float(np.std(stats, ddof=1)), RESAMPLES
    from lm_eval.api.registry import get_aggregation

    try:
        function = get_aggregation(aggregation)
    except (KeyError, ValueError):
        return None
    if function is None:
        return None
    try:
        stats = [function([values[i] for i in rng.integers(0, n, n)]) for _ in range(RESAMPLES_SLOW)]
    except Exception as exc:  # a resample the aggregation cannot take: no stderr, not a lost evaluation
        log.warning("no bootstrap stderr for %s: a resample failed (%s: %s)", aggregation, type(exc).__name__, exc)
        return None
    return float(np.std(np.asarray(stats, dtype=np.float64), ddof=1)), RESAMPLES_SLOW


def group_leaves(group: str, subtasks: dict[str, list]) -> list[str]:
    """Every leaf task under ``group`` (``group_subtasks`` of a results file), nested
    groups flattened, as lm-eval aggregates a group."""
    return [leaf for child in subtasks.get(group, []) for leaf in
            (group_leaves(child, subtasks) if child in subtasks else [child])]


def fill_bootstrap_stderr(results: dict, table: dict, seed: int = SEED) -> dict[str, Any]:
    """Fill every "N/A" stderr of ``results`` that the per-document ``table`` can give,
    leaf tasks first, then groups; return what was filled (``{"seed", "metrics":
    {"task/metric": resamples}}``), also the caller's to record."""
    filled: dict[str, int] = {}
    clustered: dict[str, dict] = {}
    scores = results.get("results") or {}
    for task, entry in (table.get("tasks") or {}).items():
        values_of = scores.get(task)
        if not values_of:
            continue
        filt = entry.get("filter", "none")
        by_cluster = None
        if entry.get("clusters") is not None:
            by_cluster = clusters.cluster_index(entry["clusters"])
            clustered[task] = clusters.describe(entry)
        for metric, values in entry["metrics"].items():
            key = f"{metric}_stderr,{filt}"
            if f"{metric},{filt}" not in values_of or (by_cluster is None and not _missing(values_of.get(key))):
                continue
            rng = np.random.default_rng([seed, len(values)])
            found = _bootstrap(entry["aggregation"].get(metric, "mean"), values, rng, by_cluster)
            # An infinite value (a perplexity that overflows) has no finite spread: left out.
            if found is not None and math.isfinite(found[0]):
                values_of[key], filled[f"{task}/{metric}"] = found
            elif by_cluster is not None:  # a document-level stderr would claim too much: none
                values_of[key] = "N/A"
    subtasks = {g: list(m) for g, m in (results.get("group_subtasks") or {}).items() if m}
    sizes = {t: (c or {}).get("effective") for t, c in (results.get("n-samples") or {}).items()}
    for group, info in (table.get("groups") or {}).items():
        values_of = scores.get(group)
        if not values_of:
            continue
        leaves = group_leaves(group, subtasks)
        for metric, how in (info.get("aggregate") or {}).items():
            key = f"{metric}_stderr,none"
            if f"{metric},none" not in values_of or not _missing(values_of.get(key)):
                continue
            stderrs = [(scores.get(leaf) or {}).get(f"{metric}_stderr,none") for leaf in leaves]
            if not leaves or any(_missing(s) for s in stderrs):
                continue
            from lm_eval.api.metrics import pooled_sample_stderr, unweighted_mean_stderr

            if how.get("weight_by_size"):
                counts = [sizes.get(leaf) for leaf in leaves]
                if any(not isinstance(c, int) for c in counts):
                    continue
                values_of[key] = float(pooled_sample_stderr([float(s) for s in stderrs], counts))
            else:
                values_of[key] = float(unweighted_mean_stderr([float(s) for s in stderrs]))
            filled[f"{group}/{metric}"] = 0  # from its leaves' stderrs
    out: dict[str, Any] = {"seed": seed, "metrics": filled} if filled else {}
    if clustered:
        out["clustered"] = clustered
    return out
