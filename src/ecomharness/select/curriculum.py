"""Curriculum: order the packed samples from easy to hard (Llama-3-SynE).

    curriculum:
      by: perplexity                # any selector (built-in or a plugin's); its options beside it
      model: models/proxy           # perplexity's option: a local proxy causal LM
      stages: 3                     # 1 = strict order; N = N stages, shuffled inside each
      order: ascending              # easy (low score) first; descending for the reverse
      cache_dir: null               # default: beside the output, .selection-cache

Every selected sample (the records joined as they will be packed) is decoded back to
text and scored through the same on-disk cache as selection, so a rebuild with another
ratio or stage count scores nothing twice. Stages split the ordered samples into equal
counts; shuffling inside a stage (seeded) keeps neighbouring blocks varied while the
difficulty still rises from stage to stage. Training on such a dataset must not shuffle:
``ecomharness train`` reads ``curriculum`` from the build's stats.json and sets HF
Trainer's ``train_sampling_strategy`` to ``sequential`` unless the recipe says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomharness.errors import UserError
from ecomharness.select.cache import ScoreCache

KEYS = {"by", "stages", "order", "cache_dir"}
ORDERS = ("ascending", "descending")


@dataclass(frozen=True)
class CurriculumSpec:
    """A validated ``curriculum`` block; ``options`` go to the scorer's factory."""

    by: str = "perplexity"
    stages: int = 1
    order: str = "ascending"
    cache_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_curriculum(raw: Any, where: str) -> CurriculumSpec | None:
    """Validate the recipe's ``curriculum`` block (``None`` when absent)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{where}.curriculum: expected a mapping such as {{by: perplexity, model: PATH, stages: 3}}")
    by = raw.get("by", "perplexity")
    if not isinstance(by, str):
        raise UserError(f"{where}.curriculum.by: expected a selector name, got {by!r}")
    stages = raw.get("stages", 1)
    if not isinstance(stages, int) or isinstance(stages, bool) or stages < 1:
        raise UserError(f"{where}.curriculum.stages: expected a positive integer, got {stages!r}")
    order = raw.get("order", "ascending")
    if order not in ORDERS:
        raise UserError(f"{where}.curriculum.order: expected one of {ORDERS}, got {order!r}")
    cache_dir = raw.get("cache_dir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise UserError(f"{where}.curriculum.cache_dir: expected a path, got {cache_dir!r}")
    options = {k: v for k, v in raw.items() if k not in KEYS}
    return CurriculumSpec(by=by, stages=stages, order=order, cache_dir=cache_dir, options=options)


def stage_order(scores: np.ndarray, stages: int, descending: bool, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Positions sorted by score (ties keep their position), cut into ``stages`` equal
    parts, each part shuffled with ``seed``; returns the order and the parts."""
    key = -scores if descending else scores
    ranked = np.argsort(key, kind="stable")
    parts = [part for part in np.array_split(ranked, stages) if len(part)]
    if stages > 1:
        rng = np.random.default_rng(seed)
        parts = [part[rng.permutation(len(part))] for part in parts]
    return (np.concatenate(parts) if parts else ranked), parts


def order_samples(spec: CurriculumSpec, scorer, samples: np.ndarray, sample_texts: Callable[[list[int]], list[str]],
                  cache_dir: Path, seed: int, batch_size: int = 1024) -> tuple[np.ndarray, dict, dict]:
    """``samples`` (sample ids, repeats allowed) in curriculum order, the stats for
    stats.json, and the cache counts (printed, not written: they differ between runs).

    ``sample_texts(ids)`` gives the text of each sample id; each distinct sample is
    scored once (through the cache), and every repeat takes its sample's score.
    """
    cache = ScoreCache(cache_dir)
    distinct = np.unique(samples)
    values = []
    for begin in range(0, len(distinct), batch_size):
        ids = distinct[begin : begin + batch_size].tolist()
        values.append(cache.get_or_score(sample_texts(ids), scorer))
    score_of = np.concatenate(values) if values else np.zeros(0)
    scores = score_of[np.searchsorted(distinct, samples)]
    ordered, stats = curriculum_order(spec, scores, seed, scorer.config)
    counts = {"computed": cache.computed, "reused": cache.reused, "dir": str(cache.directory)}
    return samples[ordered], stats, counts


def curriculum_order(spec: CurriculumSpec, scores: np.ndarray, seed: int, scorer_config: dict) -> tuple[np.ndarray, dict]:
    """Positions of the scored samples in curriculum order, and the stats for stats.json."""
    ordered, parts = stage_order(scores, spec.stages, spec.order == "descending", seed)
    position = 0
    stage_stats = []
    for part in parts:
        chunk = scores[part]
        stage_stats.append({"samples": int(len(part)), "first": position, "mean_score": float(chunk.mean()),
                            "min_score": float(chunk.min()), "max_score": float(chunk.max())})
        position += len(part)
    return ordered, {"by": spec.by, "order": spec.order, "stages": stage_stats, "scorer": scorer_config}
