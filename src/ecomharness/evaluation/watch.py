"""Asynchronous evaluation: evaluate each checkpoint directory of a run as it appears.

Runs in another process (or on another GPU) than training, reading the run's own
``recipe.yaml`` for the task set. A checkpoint is complete once HF Trainer has written
its ``trainer_state.json`` (the last file it saves). Idempotent: checkpoints already in
the ledger for this task set are skipped, so the watcher can be restarted at will.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import yaml

from ecomharness.errors import UserError
from ecomharness.evaluation.checkpoint import CheckpointEvaluator, ledger_record
from ecomharness.evaluation.ledger import append_record, done_keys, ledger_path

log = logging.getLogger("ecomharness.watch")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint whose save has finished, by step."""
    found = []
    for path in run_dir.glob("checkpoint-*"):
        match = _CHECKPOINT.search(path.name)
        if match and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def watch_run(run_dir: str | Path, once: bool = False, poll_seconds: float = 10.0,
              timeout_seconds: float | None = None, device: str | None = None, log_fn=print) -> int:
    """Evaluate pending checkpoints until training is done (or once); return how many."""
    import torch

    from ecomharness.train.recipe import parse_recipe
    from ecomharness.train.run import DONE_MARKER, eval_settings

    run_dir = Path(run_dir)
    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise UserError(f"{run_dir}: not a training run directory (no recipe.yaml)")
    recipe = parse_recipe(yaml.safe_load(recipe_file.read_text(encoding="utf-8")), where=str(recipe_file))
    settings = eval_settings(recipe)
    evaluator = CheckpointEvaluator(settings)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ledger = ledger_path(run_dir)
    evaluated = 0
    attempted: set[str] = set()  # a failure is recorded once per watcher, not retried in a loop
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        done = done_keys(ledger)
        pending = [(s, p) for s, p in complete_checkpoints(run_dir)
                   if (p.name, settings.key()) not in done and p.name not in attempted]
        for step, path in pending:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            start = time.perf_counter()
            try:
                results, error = evaluator.evaluate_path(str(path), device=device, dtype=recipe.model.dtype), None
            except Exception as exc:  # recorded; the next checkpoint is still evaluated
                log.exception("evaluation of %s failed", path)
                results, error = None, exc
            record = ledger_record(path.name, step, settings, epoch=state.get("epoch"), results=results,
                                   error=error, seconds=time.perf_counter() - start)
            append_record(ledger, record)
            attempted.add(path.name)
            evaluated += 1
            log_fn(f"[watch] {path.name}: {record['status']} in {record['eval_seconds']:.1f}s")
        finished = (run_dir / DONE_MARKER).is_file()
        if once or (finished and not pending and not _unfinished(run_dir, ledger, settings, attempted)):
            return evaluated
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"watch: timed out after {timeout_seconds}s with training not finished")
        time.sleep(poll_seconds)


def _unfinished(run_dir: Path, ledger: Path, settings, attempted: set[str]) -> bool:
    done = done_keys(ledger)
    return any((p.name, settings.key()) not in done and p.name not in attempted
               for _, p in complete_checkpoints(run_dir))
