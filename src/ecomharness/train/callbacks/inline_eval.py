"""Evaluate every N-th saved checkpoint inside the training process.

The recipe's ``eval`` section (``EvalSpec``) is this callback's configuration, used as
it is: no second config is copied from it. It evaluates the ``inline`` profile (the
cheap one: bits per byte and ranked choice); the ``async`` profile is ``watch``'s. What only a running Trainer knows (the run
directory, tokens per step, the ZeRO stage) is passed in beside it.

The tasks are built once at the start (``CheckpointEvaluator``); at each chosen save the
unwrapped model is evaluated with train mode, tokenizer and RNG states restored, the
result is appended to the ledger, and the metrics go to the Trainer's loggers as
``eval/<task>/<metric>`` (with ``eval/time_s``, so evaluation time is seen apart from
training time). With ZeRO stages 0-2 and several ranks, every rank evaluates its own
shard of the documents on its own replica (``eval.data_parallel``, on by default) and
rank 0 gathers the per-document results and records them, so N ranks take about 1/N of
the time; under ZeRO-3 the parameters are sharded, so every rank joins the forward
passes of every document.

Which saves are evaluated depends on the step alone (``chosen_for_evaluation``), not on
how many saves this process has seen, so a resumed run evaluates the same checkpoints
as an uninterrupted one; the final checkpoint is always evaluated.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from ecomharness.evaluation.checkpoint import CheckpointEvaluator, preserved_training_state
from ecomharness.evaluation.ledger import evaluate_and_record, ledger_path
from ecomharness.gate.checkpoints import ledger_judge
from ecomharness.train.recipe import EvalSpec
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


def record_judge(spec: EvalSpec, run_dir: Path):
    """The gate verdict function for a run's records (its policy read once, here), or
    None when the recipe names no ``eval.gate``."""
    return ledger_judge(spec.gate, ledger_path(run_dir), profiles=len(spec.profiles())) if spec.gate else None


def catch_up(every_n_saves: int, run_dir: Path, evaluator: CheckpointEvaluator, save_steps: int,
             max_steps: int | None, tokens_per_step: int = 0, device: str = "cpu", model=None,
             judge=None, contamination: dict | None = None) -> list[dict]:
    """Evaluate saved checkpoints that the schedule (every ``every_n_saves`` saves) chose
    but the ledger lacks for the evaluator's task set (a run killed between a save and
    its evaluation), from their directories, with the same record as in the loop: epoch
    from the checkpoint's trainer state, gate verdict."""
    settings = evaluator.settings
    recorded = []
    for step, directory in complete_checkpoints(Path(run_dir)):
        if not chosen_for_evaluation(step, save_steps, every_n_saves, max_steps):
            continue
        state = trainer_state(directory)

        def evaluate(directory=directory):
            if model is None:
                return evaluator.evaluate_path(str(directory), device=device)
            with preserved_training_state(model):  # training's RNG streams stay untouched
                return evaluator.evaluate_path(str(directory), device=device)

        record = evaluate_and_record(ledger_path(run_dir), settings, directory.name, step, evaluate,
                                     epoch=state.get("epoch"), tokens_seen=step * tokens_per_step, judge=judge,
                                     data_sources=evaluator.data_sources, contamination=contamination)
        if record is not None:
            recorded.append(record)
    return recorded


def inline_callback(spec: EvalSpec, tokenizer, run_dir: Path, tokens_per_step: int = 0,
                    zero_stage: int = 0, contamination: dict | None = None) -> InlineEvalCallback | None:
    """The callback for a recipe's ``eval`` section, or None when it has no ``inline``
    profile (nothing is evaluated in the training process). ``contamination``: what the
    training data held of each task (``components.training_contamination``), kept in
    every record."""
    if spec.inline is None:
        return None
    return InlineEvalCallback(spec, tokenizer, run_dir, tokens_per_step, zero_stage, contamination)


class InlineEvalCallback(TrainerCallback):
    """See the module docstring. ``attach(trainer)`` lets it log through the Trainer."""

    def __init__(self, spec: EvalSpec, tokenizer, run_dir: Path, tokens_per_step: int = 0, zero_stage: int = 0,
                 contamination: dict | None = None):
        self.spec = spec
        self.contamination = contamination or {}
        self.settings = spec.inline.settings()
        self.every_n_saves = spec.schedule(spec.inline)
        self.tokenizer = tokenizer
        self.run_dir = Path(run_dir)
        self.tokens_per_step = tokens_per_step
        self.zero_stage = zero_stage
        self.evaluator: CheckpointEvaluator | None = None
        self._judge = None
        self._log = None
        self.eval_seconds = 0.0
        self.failures: list[dict] = []
        # Ranks sharing each evaluation's documents: the job's world size when evaluating
        # data-parallel (set when training begins), else 1.
        self.eval_ranks = 1

    def attach(self, trainer) -> None:
        """Log metrics through ``trainer.log`` so TensorBoard / W&B callbacks see them."""
        self._log = trainer.log

    def _data_parallel(self, args) -> bool:
        return self.spec.data_parallel and self.zero_stage != 3 and getattr(args, "world_size", 1) > 1

    def _participates(self, args, state) -> bool:
        return self.zero_stage == 3 or state.is_world_process_zero or self._data_parallel(args)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Build the tasks once; evaluate the starting model if asked; catch up on resume."""
        self.eval_ranks = args.world_size if self._data_parallel(args) else 1
        if self._participates(args, state):
            self.begin(model, state.save_steps, state.max_steps, self.spec.on_start and state.global_step == 0,
                       state.is_world_process_zero, control, init_epoch=state.epoch)

    def begin(self, model, save_steps: int, max_steps: int | None, with_init: bool, is_main: bool = True,
              control=None, init_epoch: float | None = 0.0) -> list[dict]:
        """Build the tasks; evaluate ``init`` (``with_init``) and every scheduled saved
        checkpoint the ledger lacks. Called at the start of training, and on its own for
        a finished run re-run (no Trainer: ``control`` None). Returns the new records."""
        self.evaluator = CheckpointEvaluator(self.settings)
        if is_main:
            self._judge = record_judge(self.spec, self.run_dir)
        log.info("inline evaluation: %d tasks built in %.1fs", len(self.evaluator.loaded["tasks"]),
                 self.evaluator.setup_seconds)
        records = []
        if with_init:
            records.append(self._evaluate("init", 0, init_epoch, model, is_main, control))
        if is_main and self.zero_stage != 3:
            device = str(next(model.parameters()).device) if model is not None else "cpu"
            for record in catch_up(self.every_n_saves, self.run_dir, self.evaluator, save_steps, max_steps,
                                   self.tokens_per_step, device, model, self._judge, self.contamination):
                self._note(record, control)
                records.append(record)
        return [r for r in records if r is not None]

    def on_save(self, args, state, control, model=None, **kwargs):
        """Evaluate the saves the schedule chooses."""
        if not self._participates(args, state):
            return
        if chosen_for_evaluation(state.global_step, state.save_steps, self.every_n_saves, state.max_steps):
            self._evaluate(f"checkpoint-{state.global_step}", state.global_step, state.epoch, model,
                           state.is_world_process_zero, control)

    def _evaluate(self, checkpoint: str, step: int, epoch, model, is_main: bool, control) -> dict | None:
        def evaluate():
            return self.evaluator.evaluate_model(model, self.tokenizer, data_parallel=self.eval_ranks > 1)

        record = evaluate_and_record(ledger_path(self.run_dir), self.settings, checkpoint, step, evaluate,
                                     epoch=epoch, tokens_seen=step * self.tokens_per_step,
                                     judge=self._judge if checkpoint != "init" else None,
                                     record=is_main, data_sources=self.evaluator.data_sources,
                                     ranks=self.eval_ranks, contamination=self.contamination)
        if record is None:
            return None
        self.eval_seconds += record["eval_seconds"]
        if is_main:
            self._note(record, control)
        if record["status"] == "ok" and self._log is not None and is_main:
            logs = {f"eval/{task}/{metric}": v["value"] for task, metrics in record["metrics"].items()
                    for metric, v in metrics.items()}
            logs["eval/time_s"] = record["eval_seconds"]
            self._log(logs)
        return record

    def _note(self, record: dict, control) -> None:
        if record["status"] != "ok":
            self.failures.append(record)
            if self.spec.on_failure == "stop" and control is not None:
                control.should_training_stop = True
