"""A mixture plan: YAML validated once into a dataclass; unknown keys are errors.

    # ecomharness plan run PLAN.yaml          (relative paths resolve against this file)
    output: runs/plan/shop                   # the plan directory
    data: ../data/shop.yaml                  # a data recipe: its domain and general sources
                                             # are built once each (tokenized, held-out split)
    train: ../recipes/proxy.yaml             # the proxy: model, tokenizer, training settings
    grid:
      domain_shares: [0.1, 0.2, 0.35, 0.5, 0.7]   # at least 5, each from 0 to 1
      evaluations: 4                         # saves per point; each is one token budget
      max_steps: 120                         # optional: overrides the training recipe's
      models: [{path: base-small}, {path: base-large}]   # optional: 2+ proxy sizes
    losses:                                  # optional: the held-out tasks read as losses
      general: [heldout_bpb_general_zh, heldout_bpb_general_en]
      domain: [heldout_bpb_domain]
    parallel: 1                              # points trained side by side (subprocesses)
    seed: 0                                  # the draw of each point's blocks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.util import check_share, load_yaml_file, reject_unknown_keys

MIN_SHARES = 5
DEFAULT_LOSSES = {"general": ("heldout_bpb_general_zh", "heldout_bpb_general_en"), "domain": ("heldout_bpb_domain",)}


@dataclass(frozen=True)
class Grid:
    """The points of a plan: every share for every model, each one training run whose
    evaluations are its token budgets."""

    domain_shares: tuple[float, ...]
    evaluations: int = 4
    max_steps: int | None = None
    models: tuple[dict[str, Any], ...] = ()
    """Each replaces the training recipe's ``model`` section (``path`` or ``init``);
    empty: the recipe's own model, one size."""


@dataclass(frozen=True)
class Plan:
    """A whole plan, paths resolved against the plan file."""

    output: Path
    data: Path
    train: Path
    grid: Grid
    losses: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_LOSSES))
    parallel: int = 1
    seed: int = 0
    source_file: Path | None = None


def _path(raw: dict, key: str, where: str, base: Path) -> Path:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}.{key}: expected a path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _whole(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{where}: expected a whole number >= {low}, got {value!r}")
    return value


def _grid(raw: Any, where: str, base: Path) -> Grid:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping with domain_shares")
    reject_unknown_keys(raw, {"domain_shares", "evaluations", "max_steps", "models"}, where)
    shares = raw.get("domain_shares")
    if not isinstance(shares, list):
        raise UserError(f"{where}.domain_shares: expected a list of at least {MIN_SHARES} shares from 0 to 1")
    checked = [check_share(s, f"{where}.domain_shares[{i}]") for i, s in enumerate(shares)]
    if len(set(checked)) != len(checked):
        raise UserError(f"{where}.domain_shares: a share is listed twice ({checked})")
    if len(checked) < MIN_SHARES:
        raise UserError(f"{where}.domain_shares: {len(checked)} share(s); the law's share terms need at least "
                        f"{MIN_SHARES} to be fitted and checked by leaving one out")
    evaluations = _whole(raw.get("evaluations", 4), f"{where}.evaluations", 2)
    max_steps = raw.get("max_steps")
    if max_steps is not None:
        _whole(max_steps, f"{where}.max_steps", 1)
    models = raw.get("models") or []
    if not isinstance(models, list) or any(not isinstance(m, dict) for m in models):
        raise UserError(f"{where}.models: expected a list of model sections ({{path: ...}} or {{init: ...}})")
    if len(models) == 1:
        raise UserError(f"{where}.models: one model is the training recipe's own; list 2 or more proxy sizes, "
                        "or leave models out")
    resolved = []
    for model in models:  # a checkpoint path resolves against the plan file, as every path here
        model = dict(model)
        if isinstance(model.get("path"), str):
            path = Path(model["path"]).expanduser()
            model["path"] = str(path if path.is_absolute() else (base / path).resolve())
        resolved.append(model)
    return Grid(tuple(sorted(checked)), evaluations, max_steps, tuple(resolved))


def _losses(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return dict(DEFAULT_LOSSES)
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected {{general: [tasks], domain: [tasks]}}")
    reject_unknown_keys(raw, {"general", "domain"}, where)
    out = dict(DEFAULT_LOSSES)
    for side, tasks in raw.items():
        if isinstance(tasks, str):
            tasks = [tasks]
        if not isinstance(tasks, list) or not tasks or any(not isinstance(t, str) or not t for t in tasks):
            raise UserError(f"{where}.{side}: expected a list of held-out bits-per-byte task names")
        out[side] = tuple(tasks)
    return out


def parse_plan(raw: Any, where: str = "plan", base: Path | None = None) -> Plan:
    """Validate a parsed plan mapping; errors name the field."""
    base = base or Path.cwd()
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping at the top level")
    reject_unknown_keys(raw, {"output", "data", "train", "grid", "losses", "parallel", "seed"}, where)
    for key in ("output", "data", "train", "grid"):
        if key not in raw:
            raise UserError(f"{where}: missing required key {key!r}")
    plan = Plan(output=_path(raw, "output", where, base), data=_path(raw, "data", where, base),
                train=_path(raw, "train", where, base), grid=_grid(raw["grid"], f"{where}.grid", base),
                losses=_losses(raw.get("losses"), f"{where}.losses"),
                parallel=_whole(raw.get("parallel", 1), f"{where}.parallel", 1),
                seed=_whole(raw.get("seed", 0), f"{where}.seed", 0))
    for key in ("data", "train"):
        if not getattr(plan, key).is_file():
            raise UserError(f"{where}.{key}: {getattr(plan, key)} does not exist")
    return plan


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file."""
    from dataclasses import replace

    path = Path(path).expanduser()
    raw = load_yaml_file(path, "plan")
    return replace(parse_plan(raw, where=str(path), base=path.resolve().parent), source_file=path.resolve())
