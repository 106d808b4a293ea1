"""What a gate compares: scores, stderrs and provenance from results files or ledgers.

Accepted inputs, for the candidate and the baseline alike:

- an lm-eval results JSON (``lm_eval`` or ``ecomharness eval --output_path``), or a
  directory holding them (the newest is taken);
- a training run directory or its ``eval/ledger.jsonl`` plus a checkpoint selector:
  ``last``, ``best`` (highest ranking metric), ``best-passing`` (handled by the gate),
  ``init``, a step number or a checkpoint name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.evaluation.checkpoint import metrics_of
from ecomharness.evaluation.ledger import ledger_path, read_ledger


@dataclass(frozen=True)
class Measure:
    """One metric of one task: its value and standard error (None if not reported)."""

    value: float
    stderr: float | None

    @property
    def is_nan(self) -> bool:
        """True when the value is NaN (fails closed unless allowed)."""
        return isinstance(self.value, float) and math.isnan(self.value)


@dataclass
class Evidence:
    """Scores and provenance of one evaluated model."""

    label: str
    metrics: dict[str, dict[str, Measure]]
    versions: dict[str, Any] = field(default_factory=dict)
    data_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_subtasks: dict[str, list[str]] = field(default_factory=dict)
    checkpoint: str | None = None
    step: int | None = None

    def leaves(self, task: str) -> list[str]:
        """The leaf tasks under a group (the task itself if it is not a group)."""
        if task not in self.group_subtasks:
            return [task]
        return [leaf for child in self.group_subtasks[task] for leaf in self.leaves(child)]


def _measures(raw: dict[str, dict[str, dict]]) -> dict[str, dict[str, Measure]]:
    return {task: {m: Measure(float(v["value"]), v.get("stderr")) for m, v in metrics.items()}
            for task, metrics in raw.items()}


def from_results(results: dict, label: str) -> Evidence:
    """Evidence from an lm-eval results dict (with ecomharness's data sources if present)."""
    return Evidence(
        label=label,
        metrics=_measures(metrics_of(results)),
        versions=dict(results.get("versions", {})),
        data_sources=dict(results.get("ecomharness", {}).get("data_sources", {})),
        group_subtasks={k: list(v) for k, v in results.get("group_subtasks", {}).items() if v},
    )


def from_record(record: dict, label: str) -> Evidence:
    """Evidence from one ledger record."""
    return Evidence(
        label=label,
        metrics=_measures(record.get("metrics", {})),
        versions=dict(record.get("task_versions", {})),
        data_sources=dict(record.get("data_sources", {})),
        group_subtasks={k: list(v) for k, v in record.get("group_subtasks", {}).items() if v},
        checkpoint=record.get("checkpoint"),
        step=record.get("step"),
    )


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


def ledger_records(path: Path) -> list[dict]:
    """The successful records of a ledger, the last one per checkpoint, by step."""
    from ecomharness.report.curves import latest_ok_records

    file = path if path.name.endswith(".jsonl") else ledger_path(path)
    if not file.is_file():
        raise UserError(f"{path}: no ledger at {file}")
    records = latest_ok_records(read_ledger(file))
    if not records:
        raise UserError(f"{file}: no successful evaluation recorded")
    return records


def select_record(records: list[dict], selector: str, rank_by: tuple[str, str] | None, where: str) -> dict:
    """The ledger record a selector names (``last``, ``best``, ``init``, a step, a name)."""
    if selector == "last":
        return records[-1]
    if selector == "best":
        if rank_by is None:
            raise UserError("--checkpoint best needs the policy's rank_by (task and metric)")
        task, metric = rank_by
        scored = [r for r in records if metric in r.get("metrics", {}).get(task, {})]
        if not scored:
            raise UserError(f"{where}: no checkpoint reports {task}/{metric} to rank by")
        return max(scored, key=lambda r: r["metrics"][task][metric]["value"])
    for record in records:
        if selector in (record.get("checkpoint"), str(record.get("step")), f"checkpoint-{selector}"):
            return record
    names = ", ".join(r["checkpoint"] for r in records)
    raise UserError(f"{where}: no checkpoint {selector!r} (have: {names})")


def load_evidence(path: str | Path, selector: str | None = None, rank_by=None) -> Evidence:
    """Evidence from a results file/directory, or from a ledger with a selector."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if is_ledger(path):
        records = ledger_records(path)
        record = select_record(records, selector or "last", rank_by, str(path))
        return from_record(record, f"{path}@{record['checkpoint']}")
    if selector not in (None, "last"):
        raise UserError(f"{path}: a checkpoint selector needs a ledger or run directory, not a results file")
    file = _results_file(path)
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: not a JSON results file ({exc})") from exc
    if not isinstance(results, dict) or "results" not in results:
        raise UserError(f"{file}: not an lm-eval results file (no 'results' key)")
    return from_results(results, str(file))
