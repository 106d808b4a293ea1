"""Per-document scores: the sidecar file each evaluation writes beside its record.

A paired test needs every document's score on both sides, matched by document, so each
ledger record and each ``ecomharness eval`` result references one compact file:

    {"format": "ecomharness-per-document", "version": 1,
     "tasks": {TASK: {"doc_ids": [...], "filter": "none",
                      "metrics": {METRIC: [value per document]},
                      "aggregation": {METRIC: "mean" | "cls_macro_f1" | ...},
                      "higher_is_better": {METRIC: true}}},
     "groups": {GROUP: {"members": [...], "aggregate": {METRIC: {"weight_by_size": false}}}}}

gzip-compressed JSON, written atomically; the record holds its file name (relative to
the record's folder), byte size and SHA-256, and reading checks the hash, so a
replaced or truncated file is an error, never a silent mismatch.

A document's id is lm-eval's ``doc_hash`` (a hash of the document's content), not its
position: two runs that order documents differently still pair correctly. A document
repeated inside one task gets ``#2``, ``#3``... after its hash.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.evaluation import clusters
from ecomharness.metrics.corpus import count_form
from ecomharness.util import write_bytes_atomic

FORMAT = "ecomharness-per-document"
VERSION = 1
FOLDER = "per_document"


def _value(value: Any):
    """A per-document value as JSON keeps it: numbers as floats (NaN as null), rows as
    nested lists."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_value(v) if isinstance(v, (int, float, list, tuple)) else v for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_value(v) if isinstance(v, (list, tuple)) else v for v in value)
    return value


def _default_aggregations(names) -> dict[str, str]:
    """lm-eval's default aggregation of metrics a task uses without listing them in a
    ``metric_list`` (a multiple-choice task's ``acc``: ``mean``), by name."""
    import lm_eval.api.metrics  # noqa: F401  (registers the built-in metrics and their defaults)
    from lm_eval.api.registry import get_metric_aggregation

    found = {}
    for name in names:
        try:
            fn = get_metric_aggregation(name)
        except (KeyError, ValueError):
            continue
        if fn is not None:
            found[name] = getattr(fn, "__name__", str(fn))
    return found


def _aggregations(task: str, configs: dict, tasks: dict | None, names: list[str],
                  higher_is_better: dict | None = None) -> tuple[dict[str, str], dict[str, bool]]:
    """Each metric's aggregation name and direction: from the built task when given (it
    knows lm-eval's defaults for tasks without a ``metric_list``), else from the
    results' config, with lm-eval's default aggregation for a metric the config does
    not list and the results' ``higher_is_better`` for its direction."""
    built = (tasks or {}).get(task)
    if built is not None:
        aggregation = {m: getattr(fn, "__name__", str(fn)) for m, fn in built.aggregation().items()}
        higher = {m: bool(v) for m, v in built.higher_is_better().items()}
        return aggregation, higher
    metric_list = (configs.get(task) or {}).get("metric_list") or []
    aggregation = {m["metric"]: m.get("aggregation", "mean") for m in metric_list
                   if isinstance(m, dict) and isinstance(m.get("aggregation", "mean"), str)}
    higher = {m["metric"]: bool(m.get("higher_is_better", True)) for m in metric_list if isinstance(m, dict)}
    unlisted = [m for m in names if m not in aggregation]
    if unlisted:
        recorded = (higher_is_better or {}).get(task) or {}
        for metric, name in _default_aggregations(unlisted).items():
            aggregation[metric] = name
            higher[metric] = bool(recorded.get(metric, True))
    return aggregation, higher


def collect(results: dict, task_manager=None, tasks: dict | None = None) -> dict[str, Any]:
    """The per-document table of lm-eval results run with ``log_samples=True``
    (``results["samples"]``): per task, document ids and each metric's value per
    document, with the aggregation lm-eval applied (from the built ``tasks``, name ->
    Task, when given; else the task's config); per group (from ``task_manager``'s index,
    when given), its members and how it aggregates."""
    samples = results.get("samples") or {}
    configs = results.get("configs") or {}
    table: dict[str, Any] = {}
    for task, entries in sorted(samples.items()):
        if not entries:
            continue
        first_filter = entries[0].get("filter", "none")
        entries = [e for e in entries if e.get("filter", "none") == first_filter]
        entries.sort(key=lambda e: e.get("doc_id", 0))
        listed = [m for m in entries[0].get("metrics", []) if isinstance(m, str)]
        aggregation, higher = _aggregations(task, configs, tasks, listed, results.get("higher_is_better"))
        names = [m for m in listed if m in aggregation]
        seen: dict[str, int] = {}
        ids = []
        for entry in entries:
            base = str(entry.get("doc_hash") or hashlib.sha256(
                json.dumps(entry.get("doc"), sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest())
            seen[base] = seen.get(base, 0) + 1
            ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
        table[task] = {
            "doc_ids": ids,
            "filter": first_filter,
            "metrics": {m: [_value(e.get(m)) for e in entries] for m in names},
            "aggregation": {m: aggregation[m] for m in names},
            "higher_is_better": {m: higher.get(m, True) for m in names},
        }
        key = clusters.declared_key(configs.get(task))
        if key is not None:  # the task's documents share units (evaluation/clusters.py)
            table[task]["cluster_key"] = key
            table[task]["clusters"] = [clusters.label(e.get("doc"), key) for e in entries]
    groups: dict[str, Any] = {}
    for group, members in (results.get("group_subtasks") or {}).items():
        if not members:
            continue
        cfg = {}
        if task_manager is not None and group in task_manager.task_index:
            cfg = task_manager.task_index[group].cfg or {}
        aggregate = {}
        for item in cfg.get("aggregate_metric_list") or []:
            if isinstance(item, dict) and isinstance(item.get("metric"), str) and item.get("aggregation", "mean") == "mean":
                aggregate[item["metric"]] = {"weight_by_size": bool(item.get("weight_by_size", False))}
        groups[group] = {"members": list(members), "aggregate": aggregate}
    return {"format": FORMAT, "version": VERSION, "tasks": table, "groups": groups}


def write(record_folder: str | Path, prefix: str, table: dict) -> dict[str, Any]:
    """Write ``table`` to ``record_folder/per_document/PREFIX-HASH.json.gz`` atomically
    (named by its content, so two evaluations never overwrite each other's file); return
    the reference a record keeps: ``{"file", "bytes", "sha256"}``, ``file`` relative to
    ``record_folder``."""
    folder = Path(record_folder) / FOLDER
    payload = json.dumps(table, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    # mtime=0: the same table gives the same bytes, so the same hash.
    data = gzip.compress(payload, compresslevel=6, mtime=0)
    digest = hashlib.sha256(data).hexdigest()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in prefix)
    target = folder / f"{safe}-{digest[:16]}.json.gz"
    write_bytes_atomic(target, data)
    return {"file": f"{FOLDER}/{target.name}", "bytes": len(data), "sha256": digest}


def copy_reference(reference: dict, source_folder: str | Path, record_folder: str | Path) -> None:
    """Copy the file a record references from ``source_folder`` to ``record_folder``
    (the record moves to another ledger: the demo's cached ``init`` record)."""
    import shutil

    target = Path(record_folder) / reference["file"]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(source_folder) / reference["file"], target)


def check_reference(reference: Any, where: str) -> None:
    """``UserError`` naming ``where`` unless ``reference`` has the shape ``write`` returns."""
    if not isinstance(reference, dict) or not isinstance(reference.get("file"), str) \
            or not isinstance(reference.get("sha256"), str):
        raise UserError(f"{where}: 'per_document' must be {{file, bytes, sha256}}, got {reference!r}")


def read(base: str | Path, reference: Any, where: str) -> dict:
    """Read the table a record references (``reference`` from ``write``), relative to
    ``base``; ``UserError`` naming ``where`` when it is missing, altered or malformed."""
    check_reference(reference, where)
    path = Path(base) / reference["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{where}: per-document scores {path} cannot be read ({exc.strerror or exc})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != reference["sha256"]:
        raise UserError(f"{where}: per-document scores {path} do not match the record (sha256 {digest[:12]}..., "
                        f"recorded {reference['sha256'][:12]}...): the file was replaced or damaged")
    try:
        table = json.loads(gzip.decompress(data).decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: per-document scores {path} are not gzip JSON ({exc})") from exc
    check_table(table, str(path))
    return table


def check_table(table: Any, where: str) -> None:
    """``UserError`` unless ``table`` has the shape ``collect`` writes."""
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise UserError(f"{where}: not an ecomharness per-document file")
    if table.get("version") != VERSION:
        raise UserError(f"{where}: per-document format version {table.get('version')!r}, expected {VERSION}")
    tasks = table.get("tasks")
    if not isinstance(tasks, dict):
        raise UserError(f"{where}: 'tasks' must be a mapping")
    for task, entry in tasks.items():
        ids = entry.get("doc_ids") if isinstance(entry, dict) else None
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(ids, list) or not isinstance(metrics, dict):
            raise UserError(f"{where}: tasks.{task} must have doc_ids and metrics")
        if len(set(ids)) != len(ids):
            raise UserError(f"{where}: tasks.{task}.doc_ids repeats a document id")
        aggregation = entry.get("aggregation") if isinstance(entry.get("aggregation"), dict) else {}
        for metric, values in metrics.items():
            if not isinstance(values, list) or len(values) != len(ids):
                raise UserError(f"{where}: tasks.{task}.metrics.{metric} must have one value per document "
                                f"({len(ids)})")
            _check_values(values, aggregation.get(metric, "mean"), metric, f"{where}: tasks.{task}.metrics.{metric}")
        labels = entry.get("clusters")
        if labels is not None and (not isinstance(labels, list) or len(labels) != len(ids)
                                   or not all(x is None or isinstance(x, str) for x in labels)):
            raise UserError(f"{where}: tasks.{task}.clusters must be one cluster label (text or null) per document "
                            f"({len(ids)})")


# Metrics whose every per-document value lies in [0, 1] by definition, whichever task
# reports them: lm-eval's accuracies and exact match, ROUGE F-measures, the share-like
# metrics of this project's tasks. A value outside cannot have come from the metric, so
# the table was not written by an evaluation. (``score`` is not here: a plugin may
# define its own, a cosine similarity for one, on another range.)
UNIT_INTERVAL = frozenset({"acc", "acc_norm", "exact_match", "em", "rougeL", "rouge1", "rouge2", "missing",
                           "ambiguous", "invalid", "ndcg", "hit_at_1"})


def _check_values(values: list, aggregation: str, metric: str, where: str) -> None:
    """Every value a test could read: a number must be finite (a missing one is written
    as null, and pairing refuses it); a mean's values must be numbers, and in [0, 1] for
    the metrics that are proportions."""
    for i, value in enumerate(values):
        if value is None or isinstance(value, (list, dict)):
            if aggregation == "mean" and value is not None:
                raise UserError(f"{where}[{i}]: {value!r} is not a number, and {metric} is a mean of numbers")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}[{i}]: {value!r} is not a number")
        if not math.isfinite(value):
            raise UserError(f"{where}[{i}]: {value!r} is not a finite number (a per-document value an evaluation "
                            "could not compute is written as null)")
        if aggregation == "mean" and metric in UNIT_INTERVAL and not 0.0 <= value <= 1.0:
            raise UserError(f"{where}[{i}]: {value!r} is not between 0 and 1, as every {metric} is")


def check_against(table: dict, metrics: dict, where: str) -> None:
    """``UserError`` unless each metric the table holds, recomputed from its
    per-document values, equals the value the results or record report (``metrics``:
    task -> metric name as ``ledger.metrics_of`` keys it -> ``{"value"}``, or a number):
    a table that belongs to other results would otherwise give a point estimate from one
    and a test from the other."""
    for task, entry in table.get("tasks", {}).items():
        reported_task = metrics.get(task) or {}
        for metric, values in entry["metrics"].items():
            key = metric if entry.get("filter", "none") == "none" else f"{metric},{entry['filter']}"
            reported = reported_task.get(key)
            reported = reported.get("value") if isinstance(reported, dict) else reported
            if isinstance(reported, bool) or not isinstance(reported, (int, float)) or not math.isfinite(reported) \
                    or any(v is None for v in values):
                continue  # nothing to recompute, or nothing a test will use
            form = count_form((entry.get("aggregation") or {}).get(metric, "mean"), values)
            if form is None:
                continue
            value = form.value()
            if not math.isfinite(value) or abs(value - reported) > TOLERANCE * max(1.0, abs(reported)):
                raise UserError(f"{where}: tasks.{task}.metrics.{metric}: recomputed from the per-document values it "
                                f"is {value:.6g}, but the results report {reported!r}: these per-document scores do "
                                "not belong to these results")


# A recomputed aggregate and the reported one are sums of the same floats; only the
# order of addition differs.
TOLERANCE = 1e-9
