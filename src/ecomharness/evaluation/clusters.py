"""Clustered documents: standard errors and resampling by cluster, not by document.

Documents are not independent when several share a unit: questions on one passage
(SQuAD v2, CMRC2018), records of one product. Their scores move together, and an error
computed as if each document were a fresh draw is too small (Miller, "Adding error bars
to evals", 2024). A task declares the unit in its YAML metadata:

    metadata:
      cluster_key: context        # a field of each document (after process_docs)

and every standard error and paired test of that task then treats the clusters as the
independent draws:

- a per-document mean's standard error is the cluster-robust (CR1) one, as statsmodels
  computes it for an intercept-only regression with ``cov_type="cluster"``:
  ``sqrt(G / (G - 1) * sum_g (sum_{i in g} (x_i - mean))^2) / n`` over G clusters;
- every other aggregation (and every paired test) is bootstrapped by cluster: each
  resample draws G clusters with replacement and keeps every document of each drawn
  cluster (a cluster drawn twice counts twice).

A document without the field is a cluster of its own, and is counted
(``unclustered``), so a typo in the key shows as every document unclustered.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

# The task YAML metadata field naming the cluster key.
CLUSTER_KEY = "cluster_key"


def declared_key(config: dict | None) -> str | None:
    """The cluster key a task's config declares (``metadata.cluster_key``), or None."""
    metadata = (config or {}).get("metadata")
    key = metadata.get(CLUSTER_KEY) if isinstance(metadata, dict) else None
    return key if isinstance(key, str) and key else None


def label(doc: Any, key: str) -> str | None:
    """A document's cluster label: its ``key`` field as text (JSON for a non-text value),
    or None when the document has no such field."""
    if not isinstance(doc, dict) or doc.get(key) is None:
        return None
    value = doc[key]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def cluster_index(labels: list[str | None]) -> tuple[np.ndarray, int]:
    """Each document's cluster as a number 0..G-1 (in order of first appearance; a
    document without a label is a cluster of its own), and G."""
    numbers: dict[str, int] = {}
    index = np.empty(len(labels), np.int64)
    count = 0
    for i, name in enumerate(labels):
        if name is None:
            index[i] = count
            count += 1
            continue
        if name not in numbers:
            numbers[name] = count
            count += 1
        index[i] = numbers[name]
    return index, count


def cluster_robust_se(values: np.ndarray, index: np.ndarray, clusters: int) -> float:
    """The CR1 standard error of the mean of ``values`` with documents clustered by
    ``index`` (see the module docstring); NaN with fewer than two clusters."""
    values = np.asarray(values, np.float64)
    n = len(values)
    if clusters < 2 or n == 0:
        return math.nan
    sums = np.bincount(index, weights=values - values.mean(), minlength=clusters)
    return float(math.sqrt(clusters / (clusters - 1) * float(np.sum(sums ** 2))) / n)


def cluster_weights(rng: np.random.Generator, index: np.ndarray, clusters: int, rows: int) -> np.ndarray:
    """``rows`` cluster-bootstrap resamples as weights per document (rows x n): how many
    times each document's cluster was drawn among G draws with replacement."""
    draws = rng.integers(0, clusters, size=(rows, clusters))
    flat = (draws + (np.arange(rows, dtype=np.int64) * clusters)[:, None]).ravel()
    per_cluster = np.bincount(flat, minlength=rows * clusters).reshape(rows, clusters).astype(np.float64)
    return per_cluster[:, index]


def describe(entry: dict) -> dict | None:
    """``{"key", "clusters", "unclustered"}`` of a per-document table's task entry, or
    None when its task declares no clusters."""
    labels = entry.get("clusters")
    if labels is None:
        return None
    _, count = cluster_index(labels)
    return {"key": entry.get("cluster_key"), "clusters": count, "unclustered": sum(1 for x in labels if x is None)}
