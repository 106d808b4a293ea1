"""The layout of a training run directory, in one place.

    RUN_DIR/
      recipe.yaml              the recipe as run (absolute paths); a re-run must match it
      checkpoint-N/            HF Trainer checkpoints; complete once trainer_state.json exists
      incomplete-checkpoint-N/ a checkpoint cut off mid-save, moved aside on resume
      eval/ledger.jsonl        one record per evaluated checkpoint (evaluation.ledger)
      eval/pinned/             `watch`'s pinned snapshots of the checkpoints it is evaluating (train.pin)
      eval/logs/               the vLLM workers' logs (evaluation.vllm_backend)
      train_done.json          written once training has reached its last step

Everything that reads or writes these names goes through this module.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.evaluation.ledger import ledger_path

DONE_MARKER = "train_done.json"
RECIPE_FILE = "recipe.yaml"
STATE_FILE = "trainer_state.json"  # HF Trainer writes it last: its presence marks a complete save
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")

__all__ = ["DONE_MARKER", "RECIPE_FILE", "complete_checkpoints", "done_marker", "eval_logs_dir", "has_started",
           "is_main_process", "ledger_path", "pins_dir", "recipe_file", "set_aside_incomplete", "trainer_state"]


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that moves, writes and records in the run
    directory. The DeepSpeed launcher and torchrun set ``RANK`` in every process."""
    return os.environ.get("RANK", "0") == "0"


def recipe_file(run_dir: Path) -> Path:
    """The recipe kept in a run directory."""
    return Path(run_dir) / RECIPE_FILE


def done_marker(run_dir: Path) -> Path:
    """The file that says training reached its last step."""
    return Path(run_dir) / DONE_MARKER


def pins_dir(run_dir: Path) -> Path:
    """Where ``watch`` pins the checkpoints it evaluates (``train.pin``)."""
    return Path(run_dir) / "eval" / "pinned"


def eval_logs_dir(run_dir: Path) -> Path:
    """Where evaluation workers (vLLM) write their logs."""
    return Path(run_dir) / "eval" / "logs"


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint whose save has finished, by step."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        match = _CHECKPOINT.fullmatch(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def has_started(run_dir: Path) -> bool:
    """Whether a run in ``run_dir`` ever began training: a checkpoint folder (complete or
    not), an evaluation ledger or the done marker. A kept recipe without any of these
    belongs to a command that stopped before training (a setup error)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    if done_marker(run_dir).exists() or (run_dir / "eval" / "ledger.jsonl").exists():
        return True
    return any(_CHECKPOINT.match(child.name) for child in run_dir.iterdir())


def trainer_state(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's ``trainer_state.json`` (step, epoch, max_steps, log history)."""
    path = Path(checkpoint) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable trainer state ({exc})") from exc
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a JSON object")
    return state


def set_aside_incomplete(run_dir: Path, log) -> list[Path]:
    """Move every checkpoint without ``trainer_state.json`` (cut off mid-save) to
    ``incomplete-checkpoint-N``: reported, never deleted, and out of the way of resume
    and of ``watch``. Only rank 0 moves; returns the new paths."""
    if not is_main_process():
        return []
    done = {path for _, path in complete_checkpoints(run_dir)}
    moved = []
    for path in sorted(Path(run_dir).glob("checkpoint-*")):
        if path.is_dir() and _CHECKPOINT.fullmatch(path.name) and path not in done:
            target = path.with_name(f"incomplete-{path.name}")
            suffix = 1
            while target.exists():
                target, suffix = path.with_name(f"incomplete-{path.name}-{suffix}"), suffix + 1
            path.rename(target)
            moved.append(target)
            log(f"[train] {path.name} has no {STATE_FILE} (cut off mid-save): moved to {target.name}")
    return moved
