"""Test-only: SIGKILL this process at a named point, for the kill tests in tests/faults.

Put this directory on PYTHONPATH and set ECOMHARNESS_TEST_KILL to one of
  mid_save:STEP     after the model weights of checkpoint-STEP are written, before the
                    optimizer and trainer_state.json (a save cut off half way)
  mid_eval:NAME     when the evaluation of checkpoint NAME starts (nothing recorded yet)
The process dies as it would under the OOM killer or a preempted node: no cleanup.
"""

import os
import signal

_POINT = os.environ.get("ECOMHARNESS_TEST_KILL", "")


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


if _POINT.startswith("mid_save:"):
    _STEP = int(_POINT.split(":", 1)[1])
    import transformers

    _original_save = transformers.Trainer._save_optimizer_and_scheduler

    def _save_optimizer_and_scheduler(self, output_dir):
        if self.state.global_step == _STEP:
            _die()
        return _original_save(self, output_dir)

    transformers.Trainer._save_optimizer_and_scheduler = _save_optimizer_and_scheduler

elif _POINT.startswith("mid_eval:"):
    _NAME = _POINT.split(":", 1)[1]
    import ecomharness.evaluation.ledger as _ledger

    _original_record = _ledger.evaluate_and_record

    def evaluate_and_record(ledger, settings, checkpoint, *args, **kwargs):
        if checkpoint == _NAME:
            _die()
        return _original_record(ledger, settings, checkpoint, *args, **kwargs)

    _ledger.evaluate_and_record = evaluate_and_record
