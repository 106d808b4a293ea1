"""Evaluate every N-th saved checkpoint inside the training process.

The tasks are built once at the start (``CheckpointEvaluator``); at each chosen save the
unwrapped model is evaluated with train mode, tokenizer and RNG states restored, the
result is appended to the ledger, and the metrics go to the Trainer's loggers as
``eval/<task>/<metric>`` (with ``eval/time_s``, so evaluation time is seen apart from
training time). With ZeRO stages 0-2 only the main process evaluates; under ZeRO-3 the
parameters are sharded, so every rank must join the forward passes.

Which saves are evaluated depends on the step alone (``chosen_for_evaluation``), not on
how many saves this process has seen, so a resumed run evaluates the same checkpoints
as an uninterrupted one; the final checkpoint is always evaluated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings, preserved_training_state
from ecomharness.evaluation.ledger import evaluate_and_record, ledger_path
from ecomharness.gate.select import ledger_judge
from ecomharness.train.run_dir import complete_checkpoints, trainer_state

log = logging.getLogger("ecomharness.train")


def chosen_for_evaluation(step: int, save_steps: int, every_n_saves: int, max_steps: int | None) -> bool:
    """Whether the checkpoint saved at ``step`` is evaluated: the 1st, (1+N)th, ... save
    of every ``save_steps`` steps, and always the last step."""
    if max_steps and step >= max_steps:
        return True
    if save_steps <= 0 or step % save_steps:
        return True  # a save off the regular grid was asked for explicitly
    return (step // save_steps - 1) % every_n_saves == 0


@dataclass
class InlineEvalConfig:
    """Settings of the inline evaluator."""

    enabled: bool = True
    """Off: no evaluation in the training process (async mode, or none)."""
    settings: EvalSettings | None = None
    """Tasks and every setting that shapes a score."""
    every_n_saves: int = 1
    """Evaluate the 1st, (1+N)th, ... save (and always the last)."""
    on_start: bool = True
    """Also evaluate the starting model (recorded as checkpoint ``init``, step 0)."""
    stop_on_failure: bool = False
    """Stop training when an evaluation fails (default: record the failure, go on)."""
    run_dir: Path = field(default_factory=Path)
    """Where the ledger lives."""
    tokens_per_step: int = 0
    """Tokens consumed per optimizer step (for the ledger's ``tokens_seen``)."""
    zero_stage: int = 0
    """DeepSpeed ZeRO stage (3: every rank evaluates)."""
    gate_policy: str | None = None
    """A gate policy: each checkpoint is gated against the run's ``init`` evaluation and
    the verdict is stored in its ledger record."""

    def build(self, tokenizer) -> InlineEvalCallback | None:
        """The callback, or None when disabled or there is nothing to evaluate."""
        if not self.enabled or self.settings is None or not self.settings.tasks:
            return None
        return InlineEvalCallback(self, tokenizer)

    def judge(self):
        """The gate verdict function for records (the policy read once), or None
        without a policy."""
        if not self.gate_policy:
            return None
        if getattr(self, "_judge", None) is None:
            self._judge = ledger_judge(self.gate_policy, ledger_path(self.run_dir))
        return self._judge


def catch_up(config: InlineEvalConfig, evaluator: CheckpointEvaluator, save_steps: int, max_steps: int | None,
             device: str = "cpu", model=None) -> list[dict]:
    """Evaluate saved checkpoints that the schedule chose but the ledger lacks (a run
    killed between a save and its evaluation), from their directories, with the same
    record as in the loop: epoch from the checkpoint's trainer state, gate verdict."""
    recorded = []
    for step, directory in complete_checkpoints(Path(config.run_dir)):
        if not chosen_for_evaluation(step, save_steps, config.every_n_saves, max_steps):
            continue
        state = trainer_state(directory)

        def evaluate(directory=directory):
            if model is None:
                return evaluator.evaluate_path(str(directory), device=device)
            with preserved_training_state(model):  # training's RNG streams stay untouched
                return evaluator.evaluate_path(str(directory), device=device)

        record = evaluate_and_record(ledger_path(config.run_dir), config.settings, directory.name, step, evaluate,
                                     epoch=state.get("epoch"), tokens_seen=step * config.tokens_per_step,
                                     judge=config.judge())
        if record is not None:
            recorded.append(record)
    return recorded


class InlineEvalCallback(TrainerCallback):
    """See the module docstring. ``attach(trainer)`` lets it log through the Trainer."""

    def __init__(self, config: InlineEvalConfig, tokenizer):
        self.config = config
        self.tokenizer = tokenizer
        self.evaluator: CheckpointEvaluator | None = None
        self._log = None
        self.eval_seconds = 0.0
        self.failures: list[dict] = []

    def attach(self, trainer) -> None:
        """Log metrics through ``trainer.log`` so TensorBoard / W&B callbacks see them."""
        self._log = trainer.log

    def _participates(self, state) -> bool:
        return self.config.zero_stage == 3 or state.is_world_process_zero

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Build the tasks once; evaluate the starting model if asked; catch up on resume."""
        if not self._participates(state):
            return
        self.evaluator = CheckpointEvaluator(self.config.settings)
        log.info("inline evaluation: %d tasks built in %.1fs", len(self.evaluator.loaded["tasks"]),
                 self.evaluator.setup_seconds)
        if self.config.on_start and state.global_step == 0:
            self._evaluate("init", state, model, control)
        if state.is_world_process_zero and self.config.zero_stage != 3:
            device = str(next(model.parameters()).device) if model is not None else "cpu"
            for record in catch_up(self.config, self.evaluator, state.save_steps, state.max_steps, device, model):
                self._note(record, control)

    def on_save(self, args, state, control, model=None, **kwargs):
        """Evaluate the saves the schedule chooses."""
        if not self._participates(state):
            return
        if chosen_for_evaluation(state.global_step, state.save_steps, self.config.every_n_saves, state.max_steps):
            self._evaluate(f"checkpoint-{state.global_step}", state, model, control)

    def _evaluate(self, checkpoint: str, state, model, control) -> None:
        def evaluate():
            return self.evaluator.evaluate_model(model, self.tokenizer)

        record = evaluate_and_record(ledger_path(self.config.run_dir), self.config.settings, checkpoint,
                                     state.global_step, evaluate, epoch=state.epoch,
                                     tokens_seen=state.global_step * self.config.tokens_per_step,
                                     judge=self.config.judge() if checkpoint != "init" and state.is_world_process_zero else None,
                                     record=state.is_world_process_zero)
        if record is None:
            return
        self.eval_seconds += record["eval_seconds"]
        if state.is_world_process_zero:
            self._note(record, control)
        if record["status"] == "ok" and self._log is not None and state.is_world_process_zero:
            logs = {f"eval/{task}/{metric}": v["value"] for task, metrics in record["metrics"].items()
                    for metric, v in metrics.items()}
            logs["eval/time_s"] = record["eval_seconds"]
            self._log(logs)

    def _note(self, record: dict, control) -> None:
        if record["status"] != "ok":
            self.failures.append(record)
            if self.config.stop_on_failure:
                control.should_training_stop = True
