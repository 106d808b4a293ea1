"""The evaluation ledger: ``RUN_DIR/eval/ledger.jsonl``, one record per (checkpoint, task set).

Records are appended with a single ``write`` of one line on a file opened for append
and then synced, so a crash leaves whole records behind; a torn last line (the process
killed mid-write) is ignored when reading. A checkpoint already recorded for a task
set is not evaluated again, so resumed runs and the async watcher are idempotent.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("ecomharness.ledger")

LEDGER = Path("eval") / "ledger.jsonl"


def ledger_path(run_dir: str | Path) -> Path:
    """Where a run's ledger lives."""
    return Path(run_dir) / LEDGER


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record, in order; a torn or invalid line is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping an incomplete ledger line (a run killed mid-write?)", path, number)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


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


def done_keys(path: str | Path) -> set[tuple[str, str]]:
    """``(checkpoint, task set key)`` pairs already recorded successfully."""
    return {(r.get("checkpoint"), r.get("task_set")) for r in read_ledger(path) if r.get("status") == "ok"}
