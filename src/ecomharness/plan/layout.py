"""The layout of a plan directory, in one place.

    OUTPUT/
      plan.json              the plan as run (what a resumed run must match)
      data/domain/           the domain sources' build, tokenized once (a `data build` output)
      data/general/          the general sources' build, tokenized once
      heldout/               both builds' held-out text: the points' bits-per-byte tasks read it
      points/ID/point.json   the point: domain share, model, blocks drawn from each build
      points/ID/data/        the point's blocks (a `data build` output layout: training reads it as one)
      points/ID/recipe.yaml  its training recipe: `ecomharness train` runs it anywhere
      points/ID/run/         its run directory (checkpoints, eval/ledger.jsonl)
      observations.jsonl     every point's budgets, as `plan fit` reads them
"""

from __future__ import annotations

import json
from pathlib import Path

from ecomharness.errors import UserError

MANIFEST = "plan.json"
POINT = "point.json"
OBSERVATIONS = "observations.jsonl"


class PlanLayout:
    """Paths inside one plan directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        """``plan.json``."""
        return self.root / MANIFEST

    def build(self, side: str) -> Path:
        """The build output of ``side`` (``domain`` or ``general``)."""
        return self.root / "data" / side

    @property
    def heldout(self) -> Path:
        """The held-out folders of both builds, side by side."""
        return self.root / "heldout"

    @property
    def observations(self) -> Path:
        """``observations.jsonl``."""
        return self.root / OBSERVATIONS

    def point(self, point_id: str) -> Path:
        """A point's folder."""
        return self.root / "points" / point_id

    @staticmethod
    def run_dir(point_dir: Path) -> Path:
        """A point's run directory."""
        return point_dir / "run"

    def point_dirs(self) -> list[Path]:
        """Every point folder that holds its ``point.json``, in name order."""
        folder = self.root / "points"
        return sorted(p for p in folder.iterdir() if (p / POINT).is_file()) if folder.is_dir() else []

    def read_manifest(self) -> dict:
        """``plan.json``; ``UserError`` when the folder is not a plan directory."""
        if not self.manifest.is_file():
            raise UserError(f"{self.root}: not a plan directory (no {MANIFEST}; `ecomharness plan run` writes it)")
        try:
            return json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.manifest}: not readable JSON ({exc})") from exc


def read_point(point_dir: Path) -> dict:
    """A point's ``point.json``."""
    try:
        point = json.loads((point_dir / POINT).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{point_dir / POINT}: not readable JSON ({exc})") from exc
    if not isinstance(point, dict) or not isinstance(point.get("domain_share"), (int, float)) or "id" not in point:
        raise UserError(f"{point_dir / POINT}: expected an object with id and domain_share")
    return point
