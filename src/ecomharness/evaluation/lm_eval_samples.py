"""Per-document scores from lm-eval's own sample logs (``lm_eval ... --log_samples``).

A plain lm-eval run writes, beside ``results_<date>.json``, one
``samples_<task>_<date>.jsonl`` per task: one line per document and filter with the
document's ``doc_id``, ``doc_hash`` (a hash of the document), ``prompt_hash``,
``target_hash``, the names of its ``metrics`` and each metric's value as
``process_results`` returned it. That is everything a paired test needs, so a user who
never ran our evaluator can still be gated on paired evidence.

This module turns those files into the same per-document table our evaluator writes as
a sidecar (``evaluation/per_document.py``), and checks them against the results file
they sit beside, as a sidecar is checked against its record: every task's sample count
must equal lm-eval's ``n-samples``, each metric recomputed from the samples must equal
the reported value, and the samples' hashes must reproduce lm-eval's ``task_hashes``.
A mismatch is an input error naming the file, never a silently different test.

A plain run records no ecomharness data source. Its identity is what lm-eval itself
records: per task, the hash lm-eval computes over every document, prompt and target
(``task_hash``) and a fingerprint of the task's config (``config_hash``, with what
varies from one run of the same task to the next taken out: the model arguments lm-eval
copies into ``metadata``, the path the YAML was read from, function addresses).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.evaluation import per_document
from ecomharness.evaluation.stderr import group_leaves
from ecomharness.formats.common import RecordError, iter_jsonl

# lm-eval's date_id: datetime.now().isoformat() with ":" replaced by "-".
_DATE = re.compile(r"_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json$")
# The fields of a sample line a paired test and the identity checks use; the rest
# (document, prompts, responses) can be large and is not kept.
_KEPT = ("doc_id", "doc_hash", "prompt_hash", "target_hash", "filter", "metrics")
_TOLERANCE = per_document.TOLERANCE
# What a table read here says it came from (``table["source"]``).
SAMPLES_SOURCE = "lm-eval samples"
# "<function gold_index at 0x7fd0ae1d7240>": the address differs in every process.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def _field(mapping: Any, key: str) -> dict:
    """``mapping[key]`` when both are mappings, else an empty one: a results file written
    by another tool may lack a field or hold another type there, and what this module
    reads from it only ever adds checks."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def sample_files(results_file: Path) -> dict[str, Path]:
    """``{task: samples file}`` written by the same lm-eval run as ``results_file``
    (same folder, same date suffix); empty when the run did not log samples."""
    found = _DATE.search(results_file.name)
    if not found:
        return {}
    date = found.group(1)
    suffix = f"_{date}.jsonl"
    files = {}
    for path in sorted(results_file.parent.glob(f"samples_*{suffix}")):
        files[path.name[len("samples_"):-len(suffix)]] = path
    return files


def _read_samples(path: Path) -> list[dict]:
    entries = []
    for number, sample in iter_jsonl(path):
        if isinstance(sample, RecordError):  # not UTF-8, not JSON, not an object: named by file:line
            raise sample
        if not isinstance(sample.get("metrics"), list) \
                or not all(isinstance(sample.get(k), str) for k in ("doc_hash", "prompt_hash", "target_hash")) \
                or isinstance(sample.get("doc_id"), bool) or not isinstance(sample.get("doc_id"), int):
            raise UserError(f"{path}:{number}: not an lm-eval sample (expected doc_id, doc_hash, prompt_hash, "
                            "target_hash and metrics)")
        names = [m for m in sample["metrics"] if isinstance(m, str)]
        missing = [m for m in names if m not in sample]
        if missing:
            raise UserError(f"{path}:{number}: metric {missing[0]!r} is listed but has no value")
        entries.append({**{k: sample.get(k) for k in _KEPT}, **{m: sample[m] for m in names}})
    return entries


def config_hash(config: Any, model_args: Any) -> str:
    """A fingerprint of one task's config as lm-eval records it, without what changes
    between runs of the same task: model arguments copied into ``metadata``, the
    ``config_source`` path, and function addresses."""
    config = dict(config) if isinstance(config, dict) else {}
    metadata = dict(config.get("metadata") or {}) if isinstance(config.get("metadata"), dict) else config.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("config_source", None)
        for key in (model_args or {}) if isinstance(model_args, dict) else ():
            metadata.pop(key, None)
        config["metadata"] = metadata
    text = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(_ADDRESS.sub(">", text).encode("utf-8")).hexdigest()


def _task_hash(entries: list[dict]) -> str:
    """lm-eval's ``task_hashes`` entry: sha256 over each sample's doc, prompt and target
    hashes, in file order (``loggers/evaluation_tracker.py``)."""
    joined = "".join(f"{e['doc_hash']}{e['prompt_hash']}{e['target_hash']}" for e in entries)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _reported(results: dict, task: str, metric: str, filt: str) -> Any:
    return _field(_field(results, "results"), task).get(f"{metric},{filt}")


def _check_task(task: str, path: Path, entries: list[dict], entry: dict, results: dict) -> None:
    """The samples of one task against what the results file reports for it."""
    counts = _field(results, "n-samples").get(task)
    effective = counts.get("effective") if isinstance(counts, dict) else None
    if isinstance(effective, int) and effective != len(entry["doc_ids"]):
        raise UserError(f"{path}: {len(entry['doc_ids'])} documents for filter {entry['filter']!r}, but the results "
                        f"file reports n-samples {effective} for {task}: the samples are not from this run")
    recorded = _field(results, "task_hashes").get(task)
    if isinstance(recorded, str) and recorded and recorded != _task_hash(entries):
        raise UserError(f"{path}: the samples' hashes do not reproduce the results file's task_hashes.{task}: "
                        "the samples are not from this run, or were edited")
    metrics = {task: {(m if entry["filter"] == "none" else f"{m},{entry['filter']}"):
                      _reported(results, task, m, entry["filter"]) for m in entry["metrics"]}}
    per_document.check_against({"tasks": {task: entry}}, metrics, str(path))


def _group_aggregates(results: dict, tasks: dict, groups: dict[str, list[str]]) -> dict[str, dict]:
    """How each group aggregates its metrics. lm-eval's results file does not record a
    group's ``weight_by_size``; it is read off the reported value: the mean over the
    leaves, equal or by document count, whichever reproduces the group's number. A
    metric neither reproduces gets no entry, so it is not tested as a mean of tasks."""
    found = {}
    for group, members in groups.items():
        leaves = group_leaves(group, groups)
        aggregate = {}
        reported = {**_field(_field(results, "results"), group), **_field(_field(results, "groups"), group)}
        for key, value in reported.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            parts = []
            for leaf in leaves:
                entry = tasks.get(leaf)
                leaf_value = _reported(results, leaf, metric, filt)
                if entry is None or entry["filter"] != filt or metric not in entry["metrics"] \
                        or not isinstance(leaf_value, (int, float)):
                    break
                parts.append((float(leaf_value), len(entry["doc_ids"])))
            else:
                if not parts:
                    continue
                equal = sum(v for v, _ in parts) / len(parts)
                total = sum(n for _, n in parts)
                sized = sum(v * n for v, n in parts) / total if total else math.nan
                tolerance = _TOLERANCE * max(1.0, abs(value))
                if abs(equal - value) <= tolerance:
                    aggregate[metric] = {"weight_by_size": False}
                elif abs(sized - value) <= tolerance:
                    aggregate[metric] = {"weight_by_size": True}
        found[group] = {"members": list(members), "aggregate": aggregate}
    return found


def task_identity(results: dict) -> dict[str, dict]:
    """Per task, what lm-eval records about it besides its version and shot count:
    ``config_hash`` and, when the run logged samples, lm-eval's ``task_hash``."""
    configs = _field(results, "configs")
    model_args = _field(results, "config").get("model_args")
    found: dict[str, dict] = {}
    for task, config in configs.items():
        found[task] = {"config_hash": config_hash(config, model_args)}
        recorded = _field(results, "task_hashes").get(task)
        if isinstance(recorded, str) and recorded:
            found[task]["task_hash"] = recorded
    return found


def read_samples(results: dict, results_file: Path) -> dict | None:
    """The per-document table of the sample logs beside ``results_file``
    (``per_document.collect``'s shape, plus each document's ``doc_index`` and
    ``prompt_hashes``), or None when the run logged no samples. Raises ``UserError``
    when a samples file does not match its results."""
    configs = _field(results, "configs")
    files = sample_files(results_file)
    if not files:
        return None
    samples = {task: _read_samples(path) for task, path in files.items()}
    table = per_document.collect({"samples": samples, "configs": configs,
                                  "higher_is_better": _field(results, "higher_is_better")})
    for task, entry in table["tasks"].items():
        entries = sorted((e for e in samples[task] if e.get("filter", "none") == entry["filter"]),
                         key=lambda e: e.get("doc_id", 0))
        entry["doc_index"] = [e.get("doc_id") for e in entries]
        entry["prompt_hashes"] = [e.get("prompt_hash") for e in entries]
        _check_task(task, files[task], samples[task], entry, results)
    groups = _field(results, "group_subtasks")
    groups = {g: list(m) for g, m in groups.items() if isinstance(m, list) and m}
    table["groups"] = _group_aggregates(results, table["tasks"], groups)
    table["source"] = SAMPLES_SOURCE
    per_document.check_table(table, str(results_file))
    return table
