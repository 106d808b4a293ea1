"""Observations a mixture law is fitted to: one per (model, domain share, token budget).

Either a JSON Lines file, one object per line:

    {"model_params": 1.2e6, "tokens": 409600, "domain_share": 0.25,
     "general_loss": 1.93, "domain_loss": 1.41}

(any consistent loss unit, e.g. bits per byte; other keys are kept as labels), or a
plan directory (``plan run``'s output), read from its points' ledgers: every trained
checkpoint evaluated without error is one observation, its tokens the ledger's
``tokens_seen``, its losses the plan's held-out tasks (the mean over the tasks of a
side), its model size the parameters of the point's checkpoint.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError

FIELDS = ("model_params", "tokens", "domain_share", "general_loss", "domain_loss")
METRIC = "bits_per_byte"


@dataclass(frozen=True)
class Observation:
    """One measured point of the law."""

    model_params: float
    tokens: float
    domain_share: float
    general_loss: float
    domain_loss: float
    labels: dict[str, Any] = field(default_factory=dict)
    """Where it came from (point, checkpoint), carried into tables."""

    def as_json(self) -> dict:
        """The JSON Lines form (labels inline)."""
        row = {k: v for k, v in asdict(self).items() if k != "labels"}
        return {**row, **self.labels}


def check_observation(raw: Any, where: str) -> Observation:
    """One observation from a parsed JSON object; ``UserError`` naming ``where`` and the
    field otherwise."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a JSON object with {', '.join(FIELDS)}")
    values = {}
    for name in FIELDS:
        if name not in raw:
            raise UserError(f"{where}: missing field {name!r} (an observation has {', '.join(FIELDS)})")
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{where}: field {name!r}: expected a finite number, got {value!r}")
        values[name] = float(value)
    if not 0 <= values["domain_share"] <= 1:
        raise UserError(f"{where}: field 'domain_share': expected a share from 0 to 1, got {raw['domain_share']!r}")
    for name in ("model_params", "tokens", "general_loss", "domain_loss"):
        if values[name] <= 0:
            raise UserError(f"{where}: field {name!r}: expected a number above 0, got {raw[name]!r}")
    labels = {k: v for k, v in raw.items() if k not in FIELDS}
    return Observation(**values, labels=labels)


def read_jsonl(path: Path) -> list[Observation]:
    """Observations from a JSON Lines file; errors name the line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read as UTF-8 text ({exc})") from exc
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{path}:{number}: not JSON ({exc})") from exc
        found.append(check_observation(raw, f"{path}:{number}"))
    if not found:
        raise UserError(f"{path}: no observations (expected one JSON object per line)")
    return found


def read_observations(source: str | Path, log=print) -> list[Observation]:
    """Observations from a JSON Lines file or a plan directory."""
    path = Path(source)
    if path.is_dir():
        return from_plan_dir(path, log)
    if not path.is_file():
        raise UserError(f"{path}: no such file or plan directory")
    return read_jsonl(path)


def checkpoint_parameters(checkpoint: Path) -> int:
    """The number of parameters a checkpoint holds, from its safetensors headers (no
    weights are read); tied weights are stored, and counted, once."""
    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise UserError(f"{checkpoint}: no *.safetensors file to count the model's parameters from")
    total = 0
    for file in files:
        try:
            with file.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
        except (OSError, struct.error, ValueError) as exc:
            raise UserError(f"{file}: not a readable safetensors file ({exc})") from exc
        for name, entry in header.items():
            if name != "__metadata__":
                total += math.prod(entry["shape"])
    return total


def record_losses(record: dict, losses: dict[str, list[str]]) -> dict[str, float] | None:
    """One ledger record's ``general_loss`` and ``domain_loss``: per side the mean of its
    held-out tasks' bits per byte; None when any of those tasks lacks it."""
    values = {}
    for side in ("general", "domain"):
        metrics = [((record.get("metrics") or {}).get(task) or {}).get(METRIC) for task in losses[side]]
        if any(m is None or not isinstance(m.get("value"), (int, float)) for m in metrics):
            return None
        values[f"{side}_loss"] = sum(m["value"] for m in metrics) / len(metrics)
    return values


def from_plan_dir(plan_dir: Path, log=print) -> list[Observation]:
    """Every observation a plan directory's points have recorded so far (a point still
    training contributes the budgets it has reached, and is named on the console)."""
    from ecomharness.evaluation.checkpoint_names import is_trained
    from ecomharness.evaluation.ledger import ledger_path, read_ledger
    from ecomharness.plan.layout import PlanLayout, read_point
    from ecomharness.train.run_dir import complete_checkpoints, done_marker

    layout = PlanLayout(plan_dir)
    manifest = layout.read_manifest()
    losses = manifest["losses"]
    points = layout.point_dirs()
    if not points:
        raise UserError(f"{plan_dir}: a plan directory without points (run `ecomharness plan run` first)")
    found: list[Observation] = []
    unfinished, skipped = [], 0
    for point_dir in points:
        point = read_point(point_dir)
        run_dir = layout.run_dir(point_dir)
        checkpoints = complete_checkpoints(run_dir)
        if not checkpoints:
            unfinished.append(point["id"])
            continue
        if not done_marker(run_dir).is_file():
            unfinished.append(point["id"])
        params = checkpoint_parameters(checkpoints[-1][1])
        for record in read_ledger(ledger_path(run_dir)):
            if record.get("status") != "ok" or not is_trained(record.get("checkpoint", "")):
                continue
            values = record_losses(record, losses)
            if values is None or not record.get("tokens_seen"):
                skipped += 1
                continue
            found.append(check_observation(
                {"model_params": params, "tokens": record["tokens_seen"], "domain_share": point["domain_share"],
                 **values, "point": point["id"], "checkpoint": record["checkpoint"]},
                f"{ledger_path(run_dir)} ({record['checkpoint']})"))
    if unfinished:
        log(f"[plan] {len(unfinished)} point(s) not finished, read as far as they got: {', '.join(unfinished)}")
    if skipped:
        log(f"[plan] {skipped} ledger record(s) left out: they lack a held-out loss or the tokens seen")
    if not found:
        raise UserError(f"{plan_dir}: no point has an evaluated checkpoint yet")
    return found


def write_jsonl(path: Path, observations: list[Observation]) -> None:
    """Write observations as JSON Lines (atomically)."""
    from ecomharness.util import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(o.as_json(), sort_keys=True) + "\n" for o in observations))
