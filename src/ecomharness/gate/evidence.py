"""What a gate compares: scores, stderrs and provenance from results files or ledgers.

Accepted inputs, for the candidate and the baseline alike:

- an lm-eval results JSON (``lm_eval`` or ``ecomharness eval --output_path``), or a
  directory holding them (the newest is taken);
- a training run directory or its ``eval/ledger.jsonl`` plus a checkpoint selector:
  ``last``, ``best`` (highest ranking metric), ``best-passing`` (handled by the gate),
  ``init``, a step number or a checkpoint name.

The untrained starting model (``init``) is the baseline of a run, never its candidate
unless named: ``last`` and ``best`` choose among trained checkpoints only, and a ledger
holding nothing else has no candidate. When the chosen checkpoint's latest evaluation
failed there is nothing to gate either. Both are verdicts (``NoCandidate``: the gate
fails closed), not input errors: the run exists, it just has nothing that may ship.
"""

from __future__ import annotations

import json
import math
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.evaluation.lm_eval_samples import SAMPLES_SOURCE, read_samples, task_identity
from ecomharness.evaluation.per_document import check_against, read
from ecomharness.evaluation.checkpoint_names import AVERAGE_PREFIX, is_trained
from ecomharness.evaluation.ledger import (
    check_measure,
    full_record,
    slim_record,
    is_finite,
    checkpoint_records,
    ledger_path,
    metrics_of,
    read_ledger,
)


class NoCandidate(Exception):
    """A ledger with nothing to gate for this selector; the gate fails closed with ``reason``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Measure:
    """One metric of one task: its value and standard error (None if not reported)."""

    value: float
    stderr: float | None

    @property
    def finite(self) -> bool:
        """False for NaN and infinities (such a value fails closed unless allowed)."""
        return math.isfinite(self.value)

    @property
    def usable_stderr(self) -> float | None:
        """The stderr when a test can use it: finite and not negative, else None."""
        if self.stderr is None or not math.isfinite(self.stderr) or self.stderr < 0:
            return None
        return self.stderr


@dataclass
class Evidence:
    """Scores and provenance of one evaluated model."""

    label: str
    metrics: dict[str, dict[str, Measure]]
    versions: dict[str, Any] = field(default_factory=dict)
    data_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_subtasks: dict[str, list[str]] = field(default_factory=dict)
    n_samples: dict[str, Any] = field(default_factory=dict)
    n_shot: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    step: int | None = None
    # Per-document scores (``evaluation/per_document.py``), for paired tests; None when
    # the evaluation did not keep them (older records, lm-eval results without samples).
    per_document: dict | None = None
    # What lm-eval itself records about each task (``evaluation/lm_eval_samples.py``:
    # ``task_hash``, ``config_hash``): the identity of results that carry no data source.
    lm_eval_identity: dict[str, dict[str, str]] = field(default_factory=dict)
    # What the training data held of each leaf task's test documents (the data build's
    # decontamination, copied into every ledger record by training): found, documents,
    # share, action, sources.
    contamination: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The ledger the evidence was read from: the run's earlier checkpoints, for the
    # checkpoint noise of a rule's ``noise`` (None for a results file).
    ledger: Path | None = None

    def leaves(self, task: str) -> list[str]:
        """The leaf tasks under a group (the task itself if it is not a group)."""
        if task not in self.group_subtasks:
            return [task]
        return [leaf for child in self.group_subtasks[task] for leaf in self.leaves(child)]

    def identity(self, leaf: str) -> dict[str, Any]:
        """Everything recorded about a leaf task that changes its score besides the
        model: the data's content, which documents and how many were scored (cap,
        seed, ``--limit``), the few-shot pool and shot count. Absent fields are left out."""
        source = self.data_sources.get(leaf, {})
        found = {key: source[key] for key in IDENTITY_FIELDS if key in source}
        counts = self.n_samples.get(leaf)
        if isinstance(counts, dict) and "effective" in counts:
            found["evaluated"] = counts["effective"]
        if leaf in self.n_shot:
            found["n_shot"] = self.n_shot[leaf]
        return found


# What a data source record says about which documents were scored (tasks.data.load_task).
IDENTITY_FIELDS = ("fingerprint", "documents", "documents_hash", "fewshot_hash", "max_docs", "data_seed")


def _measures(raw: Any, where: str) -> dict[str, dict[str, Measure]]:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping of task -> metric -> {{value, stderr}}")
    out = {}
    for task, metrics in raw.items():
        if not isinstance(metrics, dict):
            raise UserError(f"{where}.{task}: expected a mapping of metric -> {{value, stderr}}")
        for metric, measure in metrics.items():
            check_measure(measure, f"{where}.{task}.{metric}")
        out[task] = {m: Measure(float(v["value"]), None if v.get("stderr") is None else float(v["stderr"]))
                     for m, v in metrics.items()}
    return out


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _sources(value: Any, where: str) -> dict[str, dict]:
    """Data-source records, task -> mapping (``tasks.data.load_task`` writes them)."""
    sources = _mapping(value, where)
    for task, source in sources.items():
        if not isinstance(source, dict):
            raise UserError(f"{where}.{task}: expected a data-source mapping (origin, source, fingerprint, ...), "
                            f"got {type(source).__name__} {source!r:.60}")
    return sources


def _contamination(value: Any, where: str) -> dict[str, dict]:
    """A record's ``contamination``: per task a found count and a share from 0 to 1."""
    found = _mapping(value, where)
    for task, entry in found.items():
        share = entry.get("share") if isinstance(entry, dict) else None
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise UserError(f"{where}.{task}: expected {{found, documents, share from 0 to 1, ...}}, got {entry!r}")
    return found


def _groups(value: Any, where: str) -> dict[str, list[str]]:
    groups = _mapping(value, where)
    for name, members in groups.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise UserError(f"{where}.{name}: expected a list of task names")
    return {k: list(v) for k, v in groups.items() if v}


def _per_document(reference: Any, folder: Path | None, where: str) -> dict | None:
    """The per-document table a record references; a combined record (several task sets,
    ``ledger.checkpoint_records``) references one table per task set, read as one."""
    if reference is None or folder is None:
        return None
    if not isinstance(reference, list):
        return read(folder, reference, where)
    tables = [read(folder, part, f"{where}[{i}]") for i, part in enumerate(reference)]
    merged = dict(tables[0], tasks={}, groups={})
    for table in tables:
        merged["tasks"].update(table["tasks"])
        merged["groups"].update(table.get("groups", {}))
    return merged


def from_results(results: dict, label: str, folder: Path | None = None, file: Path | None = None) -> Evidence:
    """Evidence from an lm-eval results dict (with ecomharness's data sources if present);
    ``folder`` (the results file's) resolves its per-document scores. Results without
    our per-document sidecar take them from lm-eval's own sample logs beside ``file``
    (``lm_eval --log_samples``), checked against the results."""
    raw = _mapping(results.get("results"), f"{label}: results")
    for task, values in raw.items():
        if not isinstance(values, dict):
            raise UserError(f"{label}: results.{task}: expected a mapping of 'metric,filter' -> number")
    provenance = _mapping(results.get("ecomharness"), f"{label}: ecomharness")
    per_document = _per_document(provenance.get("per_document"), folder, f"{label}: ecomharness.per_document")
    if per_document is None and file is not None:
        per_document = read_samples(results, file)
    return _checked(Evidence(
        label=label,
        metrics=_measures(metrics_of(results), f"{label}: results"),
        versions=_mapping(results.get("versions"), f"{label}: versions"),
        data_sources=_sources(provenance.get("data_sources"), f"{label}: ecomharness.data_sources"),
        group_subtasks=_groups(results.get("group_subtasks"), f"{label}: group_subtasks"),
        n_samples=_mapping(results.get("n-samples"), f"{label}: n-samples"),
        n_shot=_mapping(results.get("n-shot"), f"{label}: n-shot"),
        per_document=per_document,
        lm_eval_identity=task_identity(results),
    ))


def from_record(record: dict, label: str, folder: Path | None = None) -> Evidence:
    """Evidence from one ledger record; ``folder`` (the ledger's) resolves its
    per-document scores."""
    return _checked(Evidence(
        label=label,
        metrics=_measures(record.get("metrics", {}), f"{label}: metrics"),
        versions=_mapping(record.get("task_versions"), f"{label}: task_versions"),
        data_sources=_sources(record.get("data_sources"), f"{label}: data_sources"),
        group_subtasks=_groups(record.get("group_subtasks"), f"{label}: group_subtasks"),
        n_samples=_mapping(record.get("n_samples"), f"{label}: n_samples"),
        n_shot=_mapping(record.get("n_shot"), f"{label}: n_shot"),
        checkpoint=record.get("checkpoint"),
        step=record.get("step"),
        per_document=_per_document(record.get("per_document"), folder, f"{label}: per_document"),
        contamination=_contamination(record.get("contamination"), f"{label}: contamination"),
    ))


def _checked(evidence: Evidence) -> Evidence:
    """The evidence, once its per-document scores are shown to be the ones its metrics
    were computed from (``per_document.check_against``); ``UserError`` otherwise."""
    # A table read from lm-eval's sample logs was checked against its results as it was
    # read (``read_samples``, naming the samples file); it is not recomputed twice.
    if evidence.per_document is not None and evidence.per_document.get("source") != SAMPLES_SOURCE:
        check_against(evidence.per_document, {task: {metric: measure.value for metric, measure in metrics.items()}
                                              for task, metrics in evidence.metrics.items()},
                      f"{evidence.label}: per-document scores")
    return evidence


def _results_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise UserError(f"{path}: no lm-eval results_*.json in this directory")
    return files[-1]


def is_ledger(path: Path) -> bool:
    """A run directory (with eval/ledger.jsonl) or a ledger file."""
    return path.name.endswith(".jsonl") or (path.is_dir() and ledger_path(path).is_file())


def ledger_file(path: Path) -> Path:
    """The ledger of a run directory or ledger path; ``UserError`` when there is none."""
    file = path if path.name.endswith(".jsonl") else ledger_path(path)
    if not file.is_file():
        raise UserError(f"{path}: no ledger at {file}")
    return file


def ledger_records(path: Path, rank_by: tuple[str, str] | None = None) -> list[dict]:
    """The latest record of each checkpoint in a ledger (ok or failed), by step, slim:
    what choosing one needs (checkpoint, step, status, error, the ``rank_by`` metric) and
    where the whole record is (``evidence_of`` reads it). A ledger of 100,000 records is
    gigabytes of per-task data sources; choosing holds a few fields of each."""
    file = ledger_file(path)
    pick = None
    if rank_by is not None:
        task, metric = rank_by

        def pick(metrics: dict) -> dict:
            found = (metrics.get(task) or {}).get(metric) if isinstance(metrics, dict) else None
            return {task: {metric: found}} if found is not None else {}

    records = checkpoint_records(read_ledger(file, strict=True, keep=partial(slim_record, metrics=pick)))
    if not records:
        raise UserError(f"{file}: the ledger holds no evaluation records")
    return records


def evidence_of(path: Path, record: dict) -> Evidence:
    """The evidence of a ledger record chosen among ``ledger_records``: the whole
    record (every task set of its checkpoint) read again from the ledger."""
    file = ledger_file(path)
    full = full_record(file, record) if "offsets" in record else record
    evidence = from_record(full, f"{path}@{full['checkpoint']}", file.parent)
    evidence.ledger = file
    return evidence


def _usable(record: dict) -> dict:
    if record["status"] != "ok":
        raise NoCandidate("failed_evaluation", f"the latest evaluation of {record['checkpoint']} failed "
                                               f"({record.get('error', 'no error recorded')}): nothing to gate")
    return record


def rank_value(record: dict, rank_by: tuple[str, str]) -> float | None:
    """The record's finite ranking value, or None (absent, failed or not finite)."""
    task, metric = rank_by
    if record.get("status") != "ok":
        return None
    value = record.get("metrics", {}).get(task, {}).get(metric, {}).get("value")
    return float(value) if is_finite(value) else None


def select_record(records: list[dict], selector: str, rank_by: tuple[str, str] | None, where: str) -> dict:
    """The ledger record a selector names (``last``, ``best``, ``init``, ``average``, a
    step, a name).

    ``last`` is the newest trained checkpoint; ``best`` the trained checkpoint with the
    highest finite ranking value, ties going to the later one (more training for the
    same score); ``average`` the newest weight average (``ecomharness average``). A
    step names its trained save, never an average at the same step. Raises
    ``NoCandidate`` when there is nothing to gate.
    """
    trained = [r for r in records if is_trained(r["checkpoint"])]
    if selector == "average":
        averages = [r for r in records if r["checkpoint"].startswith(AVERAGE_PREFIX)]
        if not averages:
            raise NoCandidate("no_candidate", f"{where} holds no averaged checkpoint: run `ecomharness average "
                                              "RUN --last N` first")
        return _usable(averages[-1])
    if selector in ("last", "best") and not trained:
        raise NoCandidate("no_candidate", f"{where} holds only the untrained init: no checkpoint to gate")
    if selector == "last":
        return _usable(trained[-1])
    if selector == "best":
        if rank_by is None:
            raise UserError("--checkpoint best needs the policy's rank_by (task and metric)")
        scored = [(rank_value(r, rank_by), r["step"], r) for r in trained]
        scored = [s for s in scored if s[0] is not None]
        if not scored:
            raise NoCandidate("no_candidate", f"{where}: no trained checkpoint reports a finite "
                                              f"{rank_by[0]}/{rank_by[1]} to rank by")
        return max(scored, key=lambda s: (s[0], s[1]))[2]
    for record in records:
        if selector == record["checkpoint"] or (is_trained(record["checkpoint"]) and selector in (
                str(record["step"]), f"checkpoint-{selector}")):
            return _usable(record)
    names = ", ".join(r["checkpoint"] for r in records)
    raise UserError(f"{where}: no checkpoint {selector!r} (have: {names})")


def load_evidence(path: str | Path, selector: str | None = None, rank_by=None, ledger: bool = False) -> Evidence:
    """Evidence from a results file/directory, or from a ledger with a selector.

    ``ledger``: the path must be a run directory or ledger (``--ledger``), never a
    results file found inside it.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if ledger or is_ledger(path):
        records = ledger_records(path, rank_by)
        return evidence_of(path, select_record(records, selector or "last", rank_by, str(path)))
    if selector not in (None, "last"):
        raise UserError(f"{path}: a checkpoint selector needs a ledger or run directory, not a results file")
    file = _results_file(path)
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: not a JSON results file ({exc})") from exc
    if not isinstance(results, dict) or "results" not in results:
        raise UserError(f"{file}: not an lm-eval results file (no 'results' key)")
    return from_results(results, str(file), file.parent, file)
