"""Pair a candidate's and a baseline's per-document scores for one task or group.

A leaf task pairs by document id (order does not matter). A group becomes one stratum
per leaf task under it, weighted as lm-eval aggregates the group: equally, or by
document count (``weight_by_size``). Anything that cannot be
paired exactly (no per-document scores on a side, different documents, an aggregation
without a count form, a value that is not a number) is said, and the caller decides
whether the unpaired test may stand in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecomharness.evaluation.clusters import cluster_index
from ecomharness.gate.evidence import Evidence
from ecomharness.gate.paired import DEFAULT_RESAMPLES, PairedResult, paired_test
from ecomharness.metrics.corpus import CountForm, paired_count_forms


class Unpaired(Exception):
    """Why no paired test can be made; ``intersection`` holds per-document values of a
    mean metric on the documents both sides share, when the document sets differ."""

    def __init__(self, message: str, intersection: tuple[list, list] | None = None):
        super().__init__(message)
        self.intersection = intersection


@dataclass(frozen=True)
class Strata:
    """What a paired test runs on: (candidate, baseline, weight) per member task, and
    per member its documents' clusters (``(index, count)``, evaluation/clusters.py) or
    None when its documents are independent."""

    parts: list[tuple[CountForm, CountForm, float]]
    tasks: list[str]
    clusters: list[tuple[np.ndarray, int] | None] | None = None


def _clusters(task: str, c_task: dict, b_task: dict, c_ids: list) -> tuple[np.ndarray, int] | None:
    """The clusters of a paired task's documents, in the candidate's order: the
    candidate's labels, which the baseline's must equal where it has them (the same
    documents grouped differently are not the same evaluation)."""
    labels = c_task.get("clusters")
    if labels is None:
        return None
    theirs = b_task.get("clusters")
    if theirs is not None:
        b_label = dict(zip(b_task["doc_ids"], theirs))
        if any(b_label[doc] != mine for doc, mine in zip(c_ids, labels)):
            raise Unpaired(f"{task} groups its documents into different clusters on the two sides")
    return cluster_index(labels)


def _table(evidence: Evidence, side: str) -> dict:
    if evidence.per_document is None:
        raise Unpaired(f"the {side} ({evidence.label}) has no per-document scores")
    return evidence.per_document


def _leaf(task: str, metric: str, candidate: Evidence, baseline: Evidence) -> tuple[CountForm, CountForm, int, Any]:
    c_table, b_table = _table(candidate, "candidate"), _table(baseline, "baseline")
    c_task, b_task = c_table["tasks"].get(task), b_table["tasks"].get(task)
    for side, entry in (("candidate", c_task), ("baseline", b_task)):
        if entry is None or metric not in entry["metrics"]:
            raise Unpaired(f"the {side} has no per-document {metric} for {task}")
    aggregation = c_task["aggregation"].get(metric, "mean")
    if b_task["aggregation"].get(metric, "mean") != aggregation:
        raise Unpaired(f"{task}/{metric} is aggregated differently on the two sides")
    c_ids, b_ids = c_task["doc_ids"], b_task["doc_ids"]
    c_values, b_values = c_task["metrics"][metric], b_task["metrics"][metric]
    b_index = {doc: i for i, doc in enumerate(b_ids)}
    if len(c_ids) != len(b_ids) or any(doc not in b_index for doc in c_ids):
        shared = [i for i, doc in enumerate(c_ids) if doc in b_index]
        only_c, only_b = len(c_ids) - len(shared), len(b_ids) - len(shared)
        intersection = None
        if aggregation == "mean" and shared:
            intersection = ([c_values[i] for i in shared], [b_values[b_index[c_ids[i]]] for i in shared])
        raise Unpaired(f"{task} was scored on different documents ({only_c} only in the candidate, {only_b} only in "
                       f"the baseline, {len(shared)} shared)", intersection)
    b_values = [b_values[b_index[doc]] for doc in c_ids]
    if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in (*c_values, *b_values)):
        raise Unpaired(f"{task}/{metric} has a per-document value that is not a finite number")
    forms = paired_count_forms(aggregation, c_values, b_values)
    if forms is None:
        raise Unpaired(f"{task}/{metric} is aggregated by {aggregation!r}, which has no paired resampling form")
    return forms[0], forms[1], len(c_ids), _clusters(task, c_task, b_task, c_ids)


def strata(task: str, metric: str, candidate: Evidence, baseline: Evidence) -> Strata:
    """The strata of a paired test of ``metric`` on ``task`` (a leaf or a group);
    ``Unpaired`` says why there are none.

    A group's metric is what lm-eval 0.4.13 computes (``api/group.py``): the mean over
    every leaf task under it, nested groups flattened, equally weighted or weighted by
    document count (``weight_by_size``)."""
    table = _table(candidate, "candidate")
    _table(baseline, "baseline")
    if not candidate.group_subtasks.get(task):
        c, b, _, grouped = _leaf(task, metric, candidate, baseline)
        return Strata([(c, b, 1.0)], [task], [grouped] if grouped is not None else None)
    rule = table.get("groups", {}).get(task, {}).get("aggregate", {}).get(metric)
    if rule is None:
        raise Unpaired(f"group {task} does not aggregate {metric} as a mean of its tasks")
    leaves = candidate.leaves(task)
    forms = [_leaf(leaf, metric, candidate, baseline) for leaf in leaves]
    sizes = [n for _, _, n, _ in forms]
    if rule["weight_by_size"]:
        total = sum(sizes)
        weights = [n / total if total else 0.0 for n in sizes]
    else:
        weights = [1 / len(forms)] * len(forms)
    grouped = [g for _, _, _, g in forms]
    return Strata([(c, b, w) for (c, b, _, _), w in zip(forms, weights)], leaves,
                  grouped if any(g is not None for g in grouped) else None)


def paired_result(task: str, metric: str, candidate: Evidence, baseline: Evidence, alpha: float = 0.05,
                  resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> PairedResult:
    """The paired test of ``metric`` on ``task`` (``gate/paired.py``), seeded per task
    and metric; ``Unpaired`` says why there is none. The gate, ``compare``, ``gate
    --plan`` and the demo all test through here."""
    found = strata(task, metric, candidate, baseline)
    return paired_test(found.parts, alpha, resamples, seed, label=f"{task}/{metric}", clusters=found.clusters)
