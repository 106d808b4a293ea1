"""Asynchronous evaluation: evaluate each checkpoint directory of a run as it appears.

The out-of-process twin of ``callbacks/inline_eval.py``: it runs in another process (or
on another GPU) than training, reads the run's own ``recipe.yaml`` for the task set and
schedule, and records through the same ``evaluate_and_record`` path, so its ledger
records are the inline ones (epoch, tokens seen, gate verdict). It evaluates the
recipe's ``async`` profile (the expensive generative suite), or the ``inline`` one when
that is all the recipe has (``--profile`` chooses); with ``on_start`` it also evaluates
the starting model (``init``) from ``model.path``, the baseline of the gate. A checkpoint is
complete once HF Trainer has written its ``trainer_state.json`` (the last file it
saves). Idempotent and safe to run twice at once: the ledger lock makes each checkpoint
evaluated once, and a failure already recorded is not appended again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.evaluation.checkpoint import CheckpointEvaluator
from ecomharness.evaluation.ledger import checkpoint_records, evaluate_and_record, read_ledger, slim_record
from ecomharness.train.callbacks.inline_eval import chosen_for_evaluation, record_judge
from ecomharness.train.components import training_contamination
from ecomharness.train.run_dir import complete_checkpoints, done_marker, ledger_path, recipe_file, trainer_state

log = logging.getLogger("ecomharness.watch")


@dataclass
class WatchResult:
    """What one ``watch`` did: checkpoints evaluated, and those whose evaluation failed."""

    evaluated: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    """checkpoint -> the error of its failed evaluation, in the order they failed."""

    @property
    def failed(self) -> list[str]:
        """The checkpoints whose evaluation failed."""
        return list(self.errors)


def watch_run(run_dir: str | Path, once: bool = False, poll_seconds: float = 10.0,
              timeout_seconds: float | None = None, device: str | None = None, log_fn=print,
              profile: str | None = None) -> WatchResult:
    """Evaluate pending checkpoints until training is done (or once).

    A checkpoint whose latest record is a failure is tried again once per invocation; if
    it fails again, the failure is reported (and counted in the result) but not
    appended a second time.
    """
    import torch

    from ecomharness.train.recipe import parse_recipe
    from ecomharness.util import load_yaml_file

    run_dir = Path(run_dir)
    kept = recipe_file(run_dir)
    if not kept.is_file():
        raise UserError(f"{run_dir}: not a training run directory (no {kept.name})")
    recipe = parse_recipe(load_yaml_file(kept, "kept recipe"), where=str(kept))
    chosen = _profile(recipe.eval, profile, kept)
    settings = chosen.settings()
    every_n_saves = recipe.eval.schedule(chosen)
    judge = record_judge(recipe.eval, run_dir)
    evaluator = CheckpointEvaluator(settings)
    contamination = training_contamination(recipe)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ledger = ledger_path(run_dir)
    result = WatchResult()
    if recipe.eval.on_start:
        _evaluate_init(recipe, evaluator, ledger, device, result, log_fn, contamination)
    attempted: set[str] = set()  # each checkpoint is tried at most once per invocation
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        pending = _pending(run_dir, ledger, settings.key(), every_n_saves, attempted)
        for step, path, state in pending:
            attempted.add(path.name)
            tokens_per_step = _tokens_per_step(state, step)
            record = evaluate_and_record(
                ledger, settings, path.name, step,
                lambda path=path: evaluator.evaluate_path(str(path), device=device, dtype=recipe.model.dtype),
                epoch=state.get("epoch"), tokens_seen=None if tokens_per_step is None else step * tokens_per_step,
                judge=judge, data_sources=evaluator.data_sources, contamination=contamination)
            if record is None:
                continue  # another watcher got there first
            result.evaluated += 1
            if record["status"] != "ok":
                result.errors[path.name] = record.get("error", "")
            log_fn(f"[watch] {path.name}: {record['status']} in {record['eval_seconds']:.1f}s")
        finished = done_marker(run_dir).is_file()
        if once or (finished and not _pending(run_dir, ledger, settings.key(), every_n_saves, attempted)):
            return result
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"watch: timed out after {timeout_seconds}s with training not finished")
        time.sleep(poll_seconds)


def _profile(spec, name: str | None, kept: Path):
    """The profile ``watch`` evaluates: the one named, else ``async``, else ``inline``."""
    if name is not None:
        if spec.profile(name) is None:
            have = ", ".join(spec.profiles()) or "none (eval is off)"
            raise UserError(f"{kept}: the recipe has no eval.{name} profile (it has: {have})")
        return spec.profile(name)
    chosen = spec.profile("async") or spec.profile("inline")
    if chosen is None:
        raise UserError(f"{kept}: the recipe evaluates nothing (eval is off): nothing to watch")
    return chosen


def _evaluate_init(recipe, evaluator: CheckpointEvaluator, ledger: Path, device: str, result: WatchResult,
                   log_fn, contamination: dict | None = None) -> None:
    """Evaluate the starting model on this task set when the ledger lacks it (the gate's
    baseline). A model built from scratch (``model.init``) has no directory to read: its
    start is evaluated in the training process only."""
    key = evaluator.settings.key()
    if any(r["checkpoint"] == "init" and r.get("task_set") == key and r["status"] == "ok"
           for r in read_ledger(ledger, keep=slim_record)):
        return
    if recipe.model.path is None:
        log_fn("[watch] init: the model is built from scratch (model.init), so only the training process can "
               "evaluate its start")
        return
    record = evaluate_and_record(
        ledger, evaluator.settings, "init", 0,
        lambda: evaluator.evaluate_path(recipe.model.path, device=device, dtype=recipe.model.dtype,
                                        tokenizer=recipe.tokenizer),
        epoch=0.0, tokens_seen=0, data_sources=evaluator.data_sources, contamination=contamination)
    if record is None:
        return
    result.evaluated += 1
    if record["status"] != "ok":
        result.errors["init"] = record.get("error", "")
    log_fn(f"[watch] init: {record['status']} in {record['eval_seconds']:.1f}s")


def _pending(run_dir: Path, ledger: Path, key: str, every_n_saves: int, attempted: set[str]):
    # Slim records: a long run's ledger is polled here again and again.
    mine = read_ledger(ledger, keep=lambda r, offset: slim_record(r, offset) if r.get("task_set") == key else None)
    latest = {r["checkpoint"]: r for r in checkpoint_records(mine)}
    pending = []
    for step, path in complete_checkpoints(run_dir):
        if path.name in attempted or latest.get(path.name, {}).get("status") == "ok":
            continue
        state = trainer_state(path)
        if chosen_for_evaluation(step, int(state.get("save_steps") or 0), every_n_saves, state.get("max_steps")):
            pending.append((step, path, state))
    return pending


def _tokens_per_step(state: dict, step: int) -> int | None:
    """Tokens per optimizer step, as the trainer logged them (``num_input_tokens_seen``
    is only tracked when asked for); None when the state does not say."""
    seen = state.get("num_input_tokens_seen")
    return seen // step if isinstance(seen, int) and seen and step else None
