"""A task whose metric fails does not take the other tasks down.

lm-eval scores every document and then aggregates every task's metrics in one pass at
the end of an evaluation, with no way to report a metric that fails: an exception in a
task's ``process_results`` or in an aggregation (a word perplexity of exp(900), a corpus
metric given rows it cannot read) ends the whole evaluation, and every other task's
results are lost with it.

``guard_tasks`` wraps, on the built Task objects, each task's aggregations and its
per-document scoring, so that a failure is caught, recorded with its reason, and stands
in as NaN. ``settle`` then puts the results right before anything reads them:

- a failed metric's value and stderr are removed, and the reason is kept
  (``{task: {metric: reason}}``, which ``ecomharness eval`` writes under
  ``ecomharness.metric_failures`` and the ledger as ``metric_failures``);
- a NaN value that no recorded failure explains is a failure too (a document's value was
  NaN, say): never a number in a table;
- an infinite value stays, as a value (``weighted_perplexity_or_inf``'s contract: a
  perplexity that overflows a float is +inf, with a warning where it was computed), but
  its stderr, which cannot be a number, is left out;
- a group whose aggregate would take in a removed or non-finite member value loses that
  aggregate too, with the member named, so no non-finite value enters an aggregate
  silently.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger("ecomharness.evaluation")


class MetricFailures:
    """The failures of one evaluation, ``(task, metric) -> reason`` (the first reason
    wins: it is the cause, later ones its consequences)."""

    def __init__(self) -> None:
        self.reasons: dict[str, dict[str, str]] = {}
        self.process_errors: dict[str, int] = {}

    def add(self, task: str, metric: str, reason: str) -> None:
        """Record that ``task``'s ``metric`` could not be computed, and why."""
        self.reasons.setdefault(task, {}).setdefault(metric, reason)

    def reset(self) -> None:
        """Forget every failure: a new evaluation with the same tasks begins."""
        self.reasons.clear()
        self.process_errors.clear()


class GuardedAggregation:
    """An aggregation that records its failure and returns NaN instead of raising.

    lm-eval picks a metric's stderr by the aggregation function itself (``metric in
    bootstrappable``; a dict keyed by ``mean``), so the guard compares and hashes as the
    function it guards: lm-eval's stderrs are the same as without it. A plain class,
    not a closure, so that lm-eval's bootstrap can send it to worker processes."""

    def __init__(self, function, task: str, metric: str, failures: MetricFailures):
        self.function = function
        self.task = task
        self.metric = metric
        self.failures = failures
        self.__name__ = getattr(function, "__name__", repr(function))  # per_document names it so
        self.__wrapped__ = function

    def __call__(self, items):
        try:
            return self.function(items)
        except Exception as exc:  # any failure of one metric: recorded, the others go on
            self.failures.add(self.task, self.metric,
                              f"its aggregation {self.__name__} failed: {type(exc).__name__}: {exc}")
            return math.nan

    def __eq__(self, other) -> bool:
        return self.function == (other.function if isinstance(other, GuardedAggregation) else other)

    def __hash__(self) -> int:
        return hash(self.function)


class GuardedProcess:
    """A task's per-document scoring that, where it raises, records the failure for
    every metric of the task and gives each the value NaN for that document (the task's
    metrics are then absent, not computed on the documents that did not fail)."""

    def __init__(self, function, task: str, metrics: list[str], failures: MetricFailures):
        self.function = function
        self.task = task
        self.metrics = metrics
        self.failures = failures

    def __call__(self, doc, results):
        try:
            return self.function(doc, results)
        except Exception as exc:  # one task's scoring: recorded, the others go on
            count = self.failures.process_errors.get(self.task, 0) + 1
            self.failures.process_errors[self.task] = count
            for metric in self.metrics:
                self.failures.add(self.task, metric,
                                  f"scoring a document failed (process_results): {type(exc).__name__}: {exc}")
            return {metric: math.nan for metric in self.metrics}


def guard_tasks(loaded: dict, failures: MetricFailures) -> dict:
    """Guard every leaf task of ``loaded`` (a TaskManager's ``load`` result: ``{"tasks":
    {name: Task}, ...}``) in place, recording into ``failures``; returns ``loaded``.

    The guards go on the Task objects lm-eval built, through its public ``aggregation()``
    and ``process_results``: lm-eval has no hook for a failing metric, and a subclass of
    its task classes would have to follow every one of them."""
    for name, task in (loaded.get("tasks") or {}).items():
        aggregations = task.aggregation()
        if not isinstance(aggregations, dict):
            continue
        for metric, function in list(aggregations.items()):
            if callable(function) and not isinstance(function, GuardedAggregation):
                aggregations[metric] = GuardedAggregation(function, name, metric, failures)
        process = getattr(task, "process_results", None)
        if callable(process) and not isinstance(process, GuardedProcess):
            task.process_results = GuardedProcess(process, name, list(aggregations), failures)
    return loaded


def _leaves(group: str, subtasks: dict[str, list]) -> list[str]:
    return [leaf for child in subtasks.get(group, []) for leaf in
            (_leaves(child, subtasks) if child in subtasks else [child])]


def _metric_keys(values: dict) -> list[tuple[str, str, str]]:
    """``(key, metric, filter)`` of each value (not stderr) in a results entry."""
    out = []
    for key in values:
        if "," in key and "_stderr" not in key.split(",", 1)[0]:
            metric, filt = key.split(",", 1)
            out.append((key, metric, filt))
    return out


def settle(results: dict, failures: MetricFailures) -> dict[str, dict[str, str]]:
    """Remove every failed or NaN value from lm-eval ``results`` (leaf tasks, then the
    groups that aggregate them), log each, and return the reasons, ``{task_or_group:
    {metric: reason}}`` (empty when nothing failed)."""
    scores = results.get("results") or {}
    subtasks = {g: list(m) for g, m in (results.get("group_subtasks") or {}).items() if m}
    reasons: dict[str, dict[str, str]] = {}

    def drop(name: str, key: str, metric: str, filt: str, reason: str) -> None:
        for table in (scores, results.get("groups") or {}):
            entry = table.get(name)
            if isinstance(entry, dict):
                entry.pop(key, None)
                entry.pop(f"{metric}_stderr,{filt}", None)
        label = metric if filt == "none" else f"{metric},{filt}"
        reasons.setdefault(name, {})[label] = reason

    for task, values in scores.items():
        if task in subtasks or not isinstance(values, dict):
            continue
        recorded = failures.reasons.get(task, {})
        for key, metric, filt in _metric_keys(values):
            value = values[key]
            if metric in recorded:
                drop(task, key, metric, filt, recorded[metric])
            elif isinstance(value, float) and math.isnan(value):
                drop(task, key, metric, filt, "it came out NaN (a document's value was not a number)")
            elif isinstance(value, float) and math.isinf(value):
                stderr_key = f"{metric}_stderr,{filt}"
                if stderr_key in values:
                    values[stderr_key] = "N/A"  # the spread of an infinite value is no number
    for group in subtasks:
        values = scores.get(group)
        if not isinstance(values, dict):
            continue
        leaves = _leaves(group, subtasks)
        for key, metric, filt in _metric_keys(values):
            label = metric if filt == "none" else f"{metric},{filt}"
            bad = [leaf for leaf in leaves if label in reasons.get(leaf, {})]
            infinite = [leaf for leaf in leaves
                        if isinstance((scores.get(leaf) or {}).get(key), float) and math.isinf(scores[leaf][key])]
            value = values[key]
            if bad:
                drop(group, key, metric, filt, f"member {bad[0]}'s {label} could not be computed: "
                                               f"{reasons[bad[0]][label]}")
            elif infinite:
                drop(group, key, metric, filt, f"member {infinite[0]}'s {label} is infinite: an aggregate of it "
                                               "would be too")
            elif isinstance(value, float) and not math.isfinite(value):
                drop(group, key, metric, filt, "it came out non-finite")
    for name, metrics in reasons.items():
        for metric, reason in metrics.items():
            log.warning("%s: %s is left out of the results: %s", name, metric, reason)
    return reasons

