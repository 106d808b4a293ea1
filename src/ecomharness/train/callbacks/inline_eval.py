"""Evaluate every N-th saved checkpoint inside the training process.

The tasks are built once at the start (``CheckpointEvaluator``); at each chosen save the
unwrapped model is evaluated with train mode, tokenizer and RNG states restored, the
result is appended to the ledger, and the metrics go to the Trainer's loggers as
``eval/<task>/<metric>`` (with ``eval/time_s``, so evaluation time is seen apart from
training time). With ZeRO stages 0-2 only the main process evaluates; under ZeRO-3 the
parameters are sharded, so every rank must join the forward passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from ecomharness.evaluation.checkpoint import (
    CheckpointEvaluator,
    EvalSettings,
    ledger_record,
    preserved_training_state,
)
from ecomharness.evaluation.ledger import append_record, done_keys, ledger_path

log = logging.getLogger("ecomharness.train")


@dataclass
class InlineEvalConfig:
    """Settings of the inline evaluator."""

    enabled: bool = True
    """Off: no evaluation in the training process (async mode, or none)."""
    settings: EvalSettings | None = None
    """Tasks and every setting that shapes a score."""
    every_n_saves: int = 1
    """Evaluate the 1st, (1+N)th, ... save."""
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


class InlineEvalCallback(TrainerCallback):
    """See the module docstring. ``attach(trainer)`` lets it log through the Trainer."""

    def __init__(self, config: InlineEvalConfig, tokenizer):
        self.config = config
        self.tokenizer = tokenizer
        self.evaluator: CheckpointEvaluator | None = None
        self.saves = 0
        self._log = None
        self.eval_seconds = 0.0

    def attach(self, trainer) -> None:
        """Log metrics through ``trainer.log`` so TensorBoard / W&B callbacks see them."""
        self._log = trainer.log

    def _participates(self, state) -> bool:
        return self.config.zero_stage == 3 or state.is_world_process_zero

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Build the tasks once; evaluate the starting model if asked."""
        if not self._participates(state):
            return
        self.evaluator = CheckpointEvaluator(self.config.settings)
        log.info("inline evaluation: %d tasks built in %.1fs", len(self.evaluator.loaded["tasks"]),
                 self.evaluator.setup_seconds)
        if self.config.on_start and state.global_step == 0:
            self._evaluate("init", state, model, control)
        self._catch_up(state, model)

    def _catch_up(self, state, model) -> None:
        """On resume: evaluate checkpoints saved before a crash but not yet in the ledger
        (killed between the save and its evaluation), from their directories."""
        from ecomharness.evaluation.watch import complete_checkpoints

        if not state.is_world_process_zero or self.config.zero_stage == 3:
            return
        path = ledger_path(self.config.run_dir)
        done = done_keys(path)
        device = str(next(model.parameters()).device) if model is not None else "cpu"
        for step, directory in complete_checkpoints(Path(self.config.run_dir)):
            if (directory.name, self.config.settings.key()) in done:
                continue
            start = time.perf_counter()
            try:
                with preserved_training_state(model):  # training's RNG streams stay untouched
                    results, error = self.evaluator.evaluate_path(str(directory), device=device), None
            except Exception as exc:  # recorded like any failed evaluation
                log.exception("evaluation of %s failed", directory)
                results, error = None, exc
            append_record(path, ledger_record(directory.name, step, self.config.settings,
                                              tokens_seen=step * self.config.tokens_per_step, results=results,
                                              error=error, seconds=time.perf_counter() - start))

    def on_save(self, args, state, control, model=None, **kwargs):
        """Evaluate every N-th save."""
        self.saves += 1
        if (self.saves - 1) % self.config.every_n_saves or not self._participates(state):
            return
        self._evaluate(f"checkpoint-{state.global_step}", state, model, control)

    def _evaluate(self, checkpoint: str, state, model, control) -> None:
        settings = self.config.settings
        path = ledger_path(self.config.run_dir)
        if (checkpoint, settings.key()) in done_keys(path):
            log.info("%s already in the ledger: not evaluated again", checkpoint)
            return
        start = time.perf_counter()
        try:
            results = self.evaluator.evaluate_model(model, self.tokenizer)
            error = None
        except Exception as exc:  # recorded, and training goes on unless configured to stop
            log.exception("evaluation of %s failed", checkpoint)
            results, error = None, exc
        seconds = time.perf_counter() - start
        self.eval_seconds += seconds
        if not state.is_world_process_zero:
            return
        record = ledger_record(checkpoint, state.global_step, settings, epoch=state.epoch,
                               tokens_seen=state.global_step * self.config.tokens_per_step,
                               results=results, error=error, seconds=seconds)
        if error is None and self.config.gate_policy and checkpoint != "init":
            record["gate"] = gate_record(self.config.gate_policy, record, path)
        append_record(path, record)
        if error is not None:
            if self.config.stop_on_failure:
                control.should_training_stop = True
            return
        if self._log is not None:
            logs = {f"eval/{task}/{metric}": v["value"] for task, metrics in record["metrics"].items()
                    for metric, v in metrics.items()}
            logs["eval/time_s"] = seconds
            self._log(logs)


def gate_record(policy_path: str, record: dict, ledger: Path) -> dict:
    """Gate one ledger record against the run's ``init`` record; a short verdict."""
    from ecomharness.evaluation.ledger import read_ledger
    from ecomharness.gate.evidence import from_record
    from ecomharness.gate.policy import load_policy
    from ecomharness.gate.verdict import run_gate
    from ecomharness.registry import gate_rules

    policy = load_policy(policy_path, known_kinds=set(gate_rules.names()))
    init = [r for r in read_ledger(ledger) if r.get("checkpoint") == "init" and r.get("status") == "ok"]
    baseline = from_record(init[-1], "init") if init else None
    verdict = run_gate(policy, from_record(record, record["checkpoint"]), baseline)
    return {"policy": policy_path, "passed": verdict.passed,
            "failed": [f"{c.rule}: {c.reason}" for c in verdict.checks if not c.passed]}
