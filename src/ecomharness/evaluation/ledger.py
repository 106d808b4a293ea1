"""The evaluation ledger: ``RUN_DIR/eval/ledger.jsonl``, one record per (checkpoint, task set).

Records are appended with a single ``write`` of one line on a file opened for append
and then synced, so a crash leaves whole records behind; a torn line (the process
killed mid-write) is skipped, with a warning, when reading. A checkpoint already
recorded for a task set is not evaluated again, so resumed runs and the async watcher
are idempotent. Appends from several processes (the training run and ``watch``, or two
watchers) are serialised by an exclusive lock on ``ledger.jsonl.lock``.

Reading for a decision (the gate, reports) is strict: a line that is not UTF-8, or a
record without the fields every record has, is an error naming ``file:line``; only a
torn JSON line is forgiven, because a kill produces exactly that.

A record's ``status`` is ``ok``, ``failed`` (the evaluation raised: the model or the
setup is at fault) or ``skipped`` (``watch`` found the checkpoint rotated away by the
Trainer before it could pin it: nobody's fault, and no evidence either way). A skipped
record says why (``reason``); readers leave the checkpoint's task set out as if it had
never been evaluated (``checkpoint_records``), so a gate or report never reads it as a
failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from ecomharness import __version__
from ecomharness.errors import UserError
from ecomharness.evaluation import per_document
from ecomharness.evaluation.checkpoint_names import is_trained
from ecomharness.evaluation.noise import NOISE_LAST, checkpoint_noise
from ecomharness.tasks.data import DATA_SOURCES
from ecomharness.util import is_number

log = logging.getLogger("ecomharness.ledger")

LEDGER = Path("eval") / "ledger.jsonl"
STATUSES = ("ok", "failed", "skipped")


def ledger_path(run_dir: str | Path) -> Path:
    """Where a run's ledger lives."""
    return Path(run_dir) / LEDGER


def check_record(record: Any, where: str) -> dict[str, Any]:
    """The record if it has the shape every ledger record has; ``UserError`` naming the
    field otherwise (a hand-edited or foreign line must not become a verdict)."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if not isinstance(record.get("checkpoint"), str) or not record["checkpoint"]:
        raise UserError(f"{where}: 'checkpoint' must be a checkpoint name, got {record.get('checkpoint')!r}")
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise UserError(f"{where}: 'step' must be a whole number >= 0, got {step!r}")
    if record.get("status") not in STATUSES:
        raise UserError(f"{where}: 'status' must be one of {', '.join(STATUSES)}, got {record.get('status')!r}")
    if record["status"] == "skipped" and (not isinstance(record.get("reason"), str) or not record["reason"]):
        raise UserError(f"{where}: a skipped record must say why ('reason'), got {record.get('reason')!r}")
    if record["status"] == "ok":
        metrics = record.get("metrics")
        if not isinstance(metrics, dict):
            raise UserError(f"{where}: 'metrics' must be a mapping of task -> metric -> {{value, stderr}}")
        for task, values in metrics.items():
            if not isinstance(values, dict):
                raise UserError(f"{where}: metrics.{task} must be a mapping of metric -> {{value, stderr}}")
            for metric, measure in values.items():
                check_measure(measure, f"{where}: metrics.{task}.{metric}")
        if record.get("per_document") is not None:
            per_document.check_reference(record["per_document"], where)
    return record


def check_measure(measure: Any, where: str) -> None:
    """``{"value": number, "stderr": number | None}``; NaN is allowed (the gate fails it
    closed with its own reason), null or text is not."""
    if not isinstance(measure, dict):
        raise UserError(f"{where}: expected {{value, stderr}}, got {measure!r}")
    value, stderr = measure.get("value"), measure.get("stderr")
    if not is_number(value):
        raise UserError(f"{where}.value: expected a number, got {value!r}")
    if stderr is not None and not is_number(stderr):
        raise UserError(f"{where}.stderr: expected a number or null, got {stderr!r}")


def read_ledger(path: str | Path, strict: bool = False,
                keep: Callable[[dict, int], dict | None] | None = None) -> list[dict[str, Any]]:
    """Every complete record, in order. A torn JSON line is skipped with a warning.

    ``strict``: a line that is not UTF-8 or a record of the wrong shape raises
    ``UserError`` naming ``file:line`` (otherwise it is skipped with a warning).
    ``keep``: called with each checked record and its byte offset as the file is read;
    what it returns is kept instead of the record (None: nothing). A reader that needs a
    few fields of a 100,000-record ledger holds those, not gigabytes of data sources.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with path.open("rb") as fh:
        number = 0
        while True:
            offset = fh.tell()
            raw = fh.readline()
            if not raw:
                break
            number += 1
            record = _parse_line(raw, f"{path}:{number}", strict)
            if record is None:
                continue
            kept = record if keep is None else keep(record, offset)
            if kept is not None:
                records.append(kept)
    return records


def _parse_line(raw: bytes, where: str, strict: bool) -> dict | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _bad(strict, f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        log.warning("%s: skipping an incomplete ledger line (a run killed mid-write?)", where)
        return None
    try:
        return check_record(record, where)
    except UserError as exc:
        _bad(strict, str(exc))
        return None


def read_record_at(path: str | Path, offset: int) -> dict[str, Any]:
    """The record whose line starts at byte ``offset`` (``read_ledger``'s ``keep`` saw
    it); ``UserError`` when the file changed under the reader."""
    with Path(path).open("rb") as fh:
        fh.seek(offset)
        record = _parse_line(fh.readline(), f"{path} (byte {offset})", strict=True)
    if record is None:
        raise UserError(f"{path}: the record at byte {offset} is gone (the ledger was rewritten while being read)")
    return record


# The fields of a record that choosing a checkpoint needs (``slim_record``).
_SLIM = ("checkpoint", "step", "status", "task_set", "error", "reason", "tokens_seen", "epoch", "wall_time")


def slim_record(record: dict, offset: int, metrics: Callable[[dict], dict] | None = None) -> dict:
    """What choosing among checkpoints needs of a record, and where the whole record is
    (``offsets``, for ``full_record``); ``metrics`` picks the metrics to keep (none by
    default). A ``read_ledger`` ``keep`` function, with ``functools.partial`` for
    ``metrics``."""
    slim = {key: record[key] for key in _SLIM if key in record}
    slim["offsets"] = [offset]
    if metrics is not None and "metrics" in record:
        slim["metrics"] = metrics(record["metrics"])
    return slim


def full_record(path: str | Path, slim: dict) -> dict:
    """The whole record a slim one (``slim_record``, possibly combined over task sets by
    ``checkpoint_records``) stands for, read again from the ledger."""
    return checkpoint_records([read_record_at(path, offset) for offset in slim["offsets"]])[0]


def _bad(strict: bool, message: str) -> None:
    if strict:
        raise UserError(message)
    log.warning("skipping a ledger line: %s", message)


@contextlib.contextmanager
def ledger_lock(path: str | Path):
    """An exclusive lock beside the ledger, held while checking and appending, so that
    two processes never evaluate and record the same checkpoint twice. Released by the
    kernel when a holder is killed (``flock``)."""
    import fcntl

    lock_file = Path(str(path) + ".lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as one line, atomically with respect to crashes of this process."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # A previous crash may have left a torn line without its newline: start afresh.
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def latest_ok_records(records: list[dict]) -> list[dict]:
    """One record per checkpoint from its latest successful record of each task set
    (a failed evaluation of one task set leaves the others' scores), by step."""
    return checkpoint_records([r for r in records if r.get("status") == "ok"])


# What a combined record takes from its parts: mappings are merged, a later task set's
# entry for the same task replacing an earlier one's (as re-evaluating would).
_MERGED = ("metrics", "group_subtasks", "n_samples", "n_shot", "task_versions", "data_sources", "subset",
           "contamination")
# (``bootstrap_stderr`` stays with each part: its seed and resamples are the part's.)


def checkpoint_records(records: list[dict]) -> list[dict]:
    """One record per checkpoint, ordered by step: its latest record of each task set
    (``task_set``), in the order they were written, read as one.

    A checkpoint evaluated on two profiles (the inline bits-per-byte and ranked-choice
    tasks, then the async generative suite) is one row of a report and one candidate of
    a gate. The combined record is ``failed`` when any task set's latest record failed
    (a gate must not pass on half the evidence); its ``task_sets`` lists the keys read,
    and ``per_document`` is a list of sidecar references when there are several. A
    checkpoint with one task set is its record, unchanged.
    """
    parts: dict[str, dict[str, dict]] = {}
    for record in records:
        parts.setdefault(record["checkpoint"], {}).pop(record.get("task_set"), None)
        parts[record["checkpoint"]][record.get("task_set")] = record  # re-inserted: written order
    # A task set whose latest record is skipped (rotated away before `watch` pinned it)
    # was never evaluated: no evidence, neither a pass nor a failure.
    kept = [[p for p in by_set.values() if p["status"] != "skipped"] for by_set in parts.values()]
    combined = [_combine(found) for found in kept if found]
    return sorted(combined, key=lambda r: r.get("step", 0))


def _combine(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    last = parts[-1]
    record = {key: last.get(key) for key in ("checkpoint", "step", "wall_time", "versions")}
    for key in ("epoch", "tokens_seen"):  # `watch` cannot always tell tokens seen: the latest that says
        record[key] = next((p[key] for p in reversed(parts) if p.get(key) is not None), None)
    record["task_sets"] = [p.get("task_set") for p in parts]
    record["eval_seconds"] = round(sum(p.get("eval_seconds", 0.0) for p in parts), 3)
    if any("offsets" in p for p in parts):  # slim records (``slim_record``): where each part is
        record["offsets"] = [offset for p in parts for offset in p.get("offsets", [])]
    failed = [p for p in parts if p["status"] != "ok"]
    if failed:
        record["status"] = "failed"
        record["error"] = "; ".join(f"task set {p.get('task_set')}: {p.get('error', 'no error recorded')}"
                                    for p in failed)
        return record
    record["status"] = "ok"
    for key in _MERGED:
        merged: dict = {}
        for part in parts:
            merged.update(part.get(key) or {})
        record[key] = merged
    record["groups"] = sorted({g for p in parts for g in p.get("groups", [])})
    references = [p["per_document"] for p in parts if p.get("per_document") is not None]
    if references:
        record["per_document"] = references
    return record


# --- the record ---------------------------------------------------------------------------

def metrics_of(results: dict) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{task_or_group: {metric: {"value", "stderr"}}}`` from an lm-eval results dict."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for task, values in results.get("results", {}).items():
        metrics: dict[str, dict[str, float | None]] = {}
        for key, value in values.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = values.get(f"{metric}_stderr,{filt}")
            metrics[metric if filt == "none" else f"{metric},{filt}"] = {
                "value": float(value),
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
            }
        out[task] = metrics
    return out


def _versions() -> dict[str, str]:
    import lm_eval
    import torch
    import transformers

    return {"ecomharness": __version__, "lm_eval": getattr(lm_eval, "__version__", "?"),
            "transformers": transformers.__version__, "torch": torch.__version__}


def hf_backend() -> dict[str, str]:
    """The ``backend`` of a record evaluated in this process by lm-eval's ``hf`` model."""
    import transformers

    return {"name": "hf", "version": transformers.__version__}


def ledger_record(checkpoint: str, step: int, settings, *, epoch: float | None = None,
                  tokens_seen: int | None = None, results: dict | None = None, error: BaseException | None = None,
                  seconds: float = 0.0, data_sources: dict | None = None,
                  record_folder: str | Path | None = None, contamination: dict | None = None,
                  backend: dict | None = None) -> dict[str, Any]:
    """One ledger record: what was evaluated, how (``settings``, an ``EvalSettings``),
    with which data (``data_sources``: the evaluator's snapshot; without one, this
    process's ``DATA_SOURCES`` as they are now), and the outcome. With
    ``record_folder`` (the ledger's folder), the results' per-document scores are
    written beside the ledger and referenced as ``per_document``. ``contamination``
    (task -> what the training data held of its test documents, from the data build) is
    kept for the evaluated tasks: the gate reads it (``contaminated``). ``backend``: what
    computed the model's outputs and its version (default: ``hf_backend()``)."""
    from dataclasses import asdict

    record: dict[str, Any] = {
        "checkpoint": checkpoint,
        "step": step,
        "epoch": epoch,
        "tokens_seen": tokens_seen,
        "task_set": settings.key(),
        "settings": asdict(settings),
        "status": "failed" if error is not None else "ok",
        "eval_seconds": round(seconds, 3),
        "wall_time": time.time(),
        "versions": _versions(),
        "backend": backend or hf_backend(),
    }
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
        return record
    results = results or {}
    record["metrics"] = metrics_of(results)
    record["groups"] = sorted(results.get("groups", {}))
    record["group_subtasks"] = {k: list(v) for k, v in results.get("group_subtasks", {}).items() if v}
    record["n_samples"] = results.get("n-samples", {})
    record["n_shot"] = results.get("n-shot", {})
    record["task_versions"] = results.get("versions", {})
    if results.get("subset"):
        record["subset"] = results["subset"]
    if results.get("bootstrap_stderr"):  # stderrs ecomharness computed where lm-eval gives none
        record["bootstrap_stderr"] = results["bootstrap_stderr"]
    if results.get("metric_failures"):  # metrics that could not be computed, and why (evaluation.guard)
        record["metric_failures"] = results["metric_failures"]
    sources = DATA_SOURCES if data_sources is None else data_sources
    record["data_sources"] = {t: sources[t] for t in sorted(results.get("results", {})) if t in sources}
    if contamination:  # what the training data held of each evaluated task (data build's decontamination)
        record["contamination"] = {t: contamination[t] for t in sorted(results.get("results", {}))
                                   if t in contamination}
    if record_folder is not None and results.get("per_document"):
        record["per_document"] = per_document.write(record_folder, f"{checkpoint}-{record['task_set']}",
                                                    results["per_document"])
    return record


def evaluate_and_record(ledger: str | Path, settings, checkpoint: str, step: int, evaluate: Callable[[], dict], *,
                        epoch: float | None = None, tokens_seen: int | None = None,
                        judge: Callable[[dict], dict] | None = None, record: bool = True,
                        data_sources: dict | None = None, log_fn: Callable[[str], None] = log.info,
                        ranks: int = 1, contamination: dict | None = None,
                        backend: dict | None = None) -> dict | None:
    """Evaluate one checkpoint once per task set and append its record: the one path the
    inline callback, its resume catch-up and ``watch`` all take, so their records are
    the same. Returns the record, or None when the checkpoint was already recorded.

    ``evaluate`` returns lm-eval results (an exception is recorded as a failed record);
    ``judge`` adds a ``gate`` verdict to a successful record; ``data_sources`` is the
    evaluator's snapshot of where each task's documents came from, ``contamination`` what
    the run's training data held of them (``ledger_record``). ``record=False`` (ranks
    other than 0 under ZeRO-3 or data-parallel evaluation) evaluates without writing;
    ``ranks`` (data-parallel evaluation) is recorded as ``eval_ranks``; ``backend`` as
    ``ledger_record`` takes it. The ledger lock is held from
    the check to the append, so concurrent processes evaluate each checkpoint once. A
    failure is not appended again when the checkpoint's latest record already is one.
    """
    key = settings.key()
    lock = ledger_lock(ledger) if record else contextlib.nullcontext()
    with lock:
        mine = [r for r in read_ledger(ledger) if r.get("task_set") == key]
        previous = [r for r in mine if r["checkpoint"] == checkpoint]
        if previous and previous[-1]["status"] == "ok":
            log_fn(f"{checkpoint} already in the ledger: not evaluated again")
            return None
        start = time.perf_counter()
        try:
            results, error = evaluate(), None
        except Exception as exc:  # recorded; the caller decides whether to go on
            log.exception("evaluation of %s failed", checkpoint)
            results, error = None, exc
        entry = ledger_record(checkpoint, step, settings, epoch=epoch, tokens_seen=tokens_seen, results=results,
                              error=error, seconds=time.perf_counter() - start, data_sources=data_sources,
                              contamination=contamination, backend=backend,
                              record_folder=Path(ledger).parent if record else None)
        if ranks > 1:
            entry["eval_ranks"] = ranks  # evaluated data-parallel: each rank a shard
        if error is None and is_trained(checkpoint):
            found = record_noise(mine, entry)
            if found:
                entry["noise"] = found
        if error is None and judge is not None:
            entry["gate"] = judge(entry)
        if record and not (error is not None and previous and previous[-1]["status"] == "failed"):
            append_record(ledger, entry)
        return entry


def record_skipped(ledger: str | Path, settings, checkpoint: str, step: int, reason: str, *,
                   epoch: float | None = None, backend: dict | None = None) -> dict | None:
    """Append a ``skipped`` record (the checkpoint was rotated away before ``watch``
    could pin it) saying ``reason``. Returns it, or None when this task set already has
    the checkpoint's outcome: evaluated, or skipped by another watcher."""
    from dataclasses import asdict

    key = settings.key()
    with ledger_lock(ledger):
        previous = [r for r in read_ledger(ledger) if r.get("task_set") == key and r["checkpoint"] == checkpoint]
        if previous and previous[-1]["status"] in ("ok", "skipped"):
            return None
        entry = {"checkpoint": checkpoint, "step": step, "epoch": epoch, "task_set": key,
                 "settings": asdict(settings), "status": "skipped", "reason": reason, "eval_seconds": 0.0,
                 "wall_time": time.time(), "versions": _versions(), "backend": backend or hf_backend()}
        append_record(ledger, entry)
        return entry


def record_noise(records: list[dict], entry: dict) -> dict | None:
    """The checkpoint noise (evaluation/noise.py) over the last ``NOISE_LAST`` trained
    checkpoints of this task set up to ``entry``'s step, ``entry`` included: per task its
    headline metric, mean, standard deviation and noise; None with fewer checkpoints."""
    earlier = [r for r in latest_ok_records(records) if r.get("step", 0) <= entry["step"]
               and r["checkpoint"] != entry["checkpoint"]]
    found = checkpoint_noise(earlier + [entry], last=NOISE_LAST)
    if not found:
        return None
    return {"last": NOISE_LAST, "tasks": {task: {k: v[k] for k in ("metric", "mean", "std", "noise")}
                                          for task, v in found.items()}}


def is_finite(value: Any) -> bool:
    """A real number that is neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)
