"""The selection stage of ``data build``: score the chosen sources' records, keep a fraction.

    select:
      sources: [products_zh]          # default: every domain source
      scorers:                        # any of similarity, perplexity, pos_entropy (or a plugin's)
        similarity: {tasks: [ecom_icl], weight: 1}     # or file: task_texts.jsonl
        perplexity: {model: models/proxy, batch_size: 16, weight: 1}
        pos_entropy: {weight: 1}
      combine: rank                   # average rank ("-com"), or weights
      sampling: {mode: hard, fraction: 0.1}            # or k: N; soft: temperature
      balance: {field: category}      # optional: split the budget across topics (select.topics)
      cache_dir: null                 # default: beside the output, .selection-cache

The stage reads and renders the sources once more (texts exist one batch at a time),
scores each record through the on-disk cache, and returns which record ordinals to
keep; ``build_table`` then skips the others. Ordinals line up because rendering is
deterministic and skips the same bad records in both passes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomharness.errors import UserError
from ecomharness.select.cache import ScoreCache
from ecomharness.select.choose import choose, combine
from ecomharness.select.scorers import build_scorer
from ecomharness.select.topics import BalanceSpec, choose_balanced
from ecomharness.util import is_number, reject_unknown_keys

KEYS = {"sources", "scorers", "combine", "sampling", "cache_dir", "seed", "balance"}


@dataclass
class SelectionReport:
    """What selection did, for stats.json."""

    kept: dict[str, np.ndarray]  # source name -> bool mask over its good records
    stats: dict[str, Any]
    cache: dict[str, Any]  # computed / reused counts: printed, kept out of stats.json


def _sampling(raw) -> dict:
    """The validated ``select.sampling`` block (default: hard, top 10%)."""
    if raw is not None and not isinstance(raw, dict):
        raise UserError(f"select.sampling: expected a mapping such as {{mode: hard, fraction: 0.1}}, got {raw!r}")
    sampling = dict(raw or {"mode": "hard", "fraction": 0.1})
    reject_unknown_keys(sampling, {"mode", "fraction", "k", "temperature"}, "select.sampling")
    if sampling.get("mode", "hard") not in ("hard", "soft"):
        raise UserError(f"select.sampling.mode: expected hard or soft, got {sampling['mode']!r}")
    if "k" in sampling and "fraction" in sampling:
        raise UserError("select.sampling: give k or fraction, not both")
    if "k" in sampling and (not isinstance(sampling["k"], int) or isinstance(sampling["k"], bool) or sampling["k"] < 0):
        raise UserError(f"select.sampling.k: expected a non-negative integer (documents per source), got {sampling['k']!r}")
    fraction = sampling.get("fraction", 0.1)
    if not is_number(fraction) or not 0 <= fraction <= 1:
        raise UserError(f"select.sampling.fraction: expected a number from 0 to 1, got {fraction!r}")
    temperature = sampling.get("temperature", 1.0)
    if not is_number(temperature) or temperature <= 0:
        raise UserError(f"select.sampling.temperature: expected a positive number, got {temperature!r}")
    return sampling


@dataclass(frozen=True)
class SelectionSpec:
    """The recipe's ``select`` block, validated once when the recipe loads.

    Scorers are named here and built when the stage runs (a proxy model loads then, not
    while a recipe is checked)."""

    sources: tuple[str, ...]
    scorers: dict[str, dict[str, Any]]  # scorer name -> its options (weight removed)
    weights: dict[str, float]
    combine: str = "rank"
    sampling: dict[str, Any] = field(default_factory=lambda: {"mode": "hard", "fraction": 0.1})
    balance: dict[str, Any] | None = None
    cache_dir: str | None = None
    seed: int | None = None  # default: the recipe's seed


COMBINE = ("rank", "weights")


def parse_selection(raw: Any, where: str, source_names: list[str], domain_names: list[str]) -> SelectionSpec | None:
    """Validate the recipe's ``select`` block (``None`` when absent); ``where`` names the
    recipe in errors, ``source_names`` and ``domain_names`` are its sources."""
    if raw is None:
        return None
    at = f"{where}.select" if where else "select"
    if not isinstance(raw, dict):
        raise UserError(f"{at}: expected a mapping such as {{scorers: {{similarity: {{tasks: [ecom_icl]}}}}}}")
    reject_unknown_keys(raw, KEYS, at)
    names = raw.get("sources") or domain_names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{at}.sources: expected a list of source names, got {names!r}")
    unknown = [n for n in names if n not in source_names]
    if unknown:
        raise UserError(f"{at}.sources: no source named {', '.join(unknown)}")
    scorer_specs = raw.get("scorers") or {}
    if not isinstance(scorer_specs, dict) or not (scorer_specs or raw.get("balance") is not None):
        raise UserError(f"{at}.scorers: name at least one scorer, e.g. {{similarity: {{tasks: [ecom_icl]}}}} "
                        "(only topic balancing may go without one)")
    scorers, weights = {}, {}
    for name, options in scorer_specs.items():
        if options is not None and not isinstance(options, dict):
            raise UserError(f"{at}.scorers.{name}: expected a mapping of options, got {options!r}")
        options = dict(options or {})
        weight = options.pop("weight", 1.0)
        if not is_number(weight) or weight < 0:
            raise UserError(f"{at}.scorers.{name}.weight: expected a non-negative number, got {weight!r}")
        scorers[str(name)], weights[str(name)] = options, float(weight)
    method = raw.get("combine", "rank")
    if method not in COMBINE:
        raise UserError(f"{at}.combine: expected one of {', '.join(COMBINE)}, got {method!r}")
    balance = raw.get("balance")
    if balance is not None and not isinstance(balance, dict):
        raise UserError(f"{at}.balance: expected a mapping such as {{field: category}}")
    cache_dir = raw.get("cache_dir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise UserError(f"{at}.cache_dir: expected a path, got {cache_dir!r}")
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UserError(f"{at}.seed: expected an integer, got {seed!r}")
    return SelectionSpec(sources=tuple(names), scorers=scorers, weights=weights, combine=method,
                         sampling=_sampling(raw.get("sampling")), balance=balance, cache_dir=cache_dir, seed=seed)


class SelectionScoring:
    """The scorers, topic source and score cache of a ``select`` block, built once (in
    the build's process, or once per Ray actor by the Ray engine)."""

    def __init__(self, recipe, spec: SelectionSpec):
        self.balance = BalanceSpec(spec.balance) if spec.balance is not None else None
        self.scorers = {name: build_scorer(name, options) for name, options in spec.scorers.items()}
        self.directions = {name: getattr(scorer, "higher_is_better", True) for name, scorer in self.scorers.items()}
        self.cache = ScoreCache(Path(spec.cache_dir or recipe.output.parent / ".selection-cache"))

    def score(self, texts: list[str], records: list[dict]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Each scorer's scores of ``texts`` (through the cache) and their topics (empty
        without ``balance``); ``records`` are the texts' records (for a topic field)."""
        columns = {name: self.cache.get_or_score(texts, scorer) for name, scorer in self.scorers.items()}
        topics = self.balance.topics(records, texts) if self.balance is not None else []
        return columns, topics


def choose_records(spec: SelectionSpec, scoring: SelectionScoring, seed: int, n: int,
                   merged: dict[str, np.ndarray], topics: list[str]) -> tuple[np.ndarray, dict]:
    """The keep mask over one source's ``n`` records (scores and topics in build order)
    and that source's entry in the selection stats."""
    sampling = spec.sampling
    if merged and n:
        score = combine(merged, scoring.directions, spec.weights, spec.combine)
    else:  # balance alone: a seeded random order inside each topic
        score = np.random.default_rng(seed).random(n)
    k = int(sampling["k"]) if "k" in sampling else int(round(float(sampling.get("fraction", 0.1)) * n))
    mode, temperature = sampling.get("mode", "hard"), float(sampling.get("temperature", 1.0))
    topic_report = None
    if scoring.balance is not None:
        picked, topic_report = choose_balanced(score, topics, k, mode, temperature, seed, scoring.balance.weights)
    else:
        picked = choose(score, k, mode, temperature, seed)
    mask = np.zeros(n, bool)
    mask[picked] = True
    entry = {
        "records": n, "kept": int(mask.sum()),
        "mean_score": {name: float(v.mean()) if len(v) else None for name, v in merged.items()},
        "mean_score_kept": {name: float(v[mask].mean()) if mask.any() else None for name, v in merged.items()},
    }
    if topic_report is not None:
        entry["topics"] = topic_report
    return mask, entry


def selection_report(spec: SelectionSpec, scoring: SelectionScoring, kept: dict[str, np.ndarray],
                     per_source: dict[str, dict], computed: int, reused: int, log=print) -> SelectionReport:
    """What selection did, for stats.json and the console."""
    stats = {"sources": per_source, "scorers": {n: s.config for n, s in scoring.scorers.items()},
             "sampling": spec.sampling, "combine": spec.combine}
    if scoring.balance is not None:
        stats["balance"] = {"by": scoring.balance.name, "weights": scoring.balance.weights}
    for name, scorer in scoring.scorers.items():
        if hasattr(scorer, "methods"):
            stats["scorers"][name] = {**scorer.config, "methods_used": dict(scorer.methods)}
    log(f"[data] selection: kept " + ", ".join(f"{n} {v['kept']:,}/{v['records']:,}" for n, v in per_source.items())
        + f" (scores computed {computed:,}, reused {reused:,})")
    return SelectionReport(kept=kept, stats=json.loads(json.dumps(stats, default=str)),
                           cache={"computed": computed, "reused": reused, "dir": str(scoring.cache.directory)})


def run_selection(recipe, spec: SelectionSpec, rendered: Callable[[Any], Iterable[tuple[str, dict]]],
                  log=print) -> SelectionReport:
    """Score and choose; return the keep masks per source and the stats.

    ``rendered(source)`` yields ``(text, record)`` for each good record of a source, in
    order: the build renders, this step only scores and chooses (so selection never
    reaches into the build's internals, and the masks line up with the build's records).
    """
    scoring = SelectionScoring(recipe, spec)
    seed = recipe.seed if spec.seed is None else spec.seed
    kept, per_source = {}, {}
    for source in recipe.sources:
        if source.name not in spec.sources:
            continue
        columns: dict[str, list[np.ndarray]] = {n: [] for n in scoring.scorers}
        topics: list[str] = []
        batch: list[str] = []
        records: list[dict] = []

        def flush():
            scores, batch_topics = scoring.score(batch, records)
            for name, values in scores.items():
                columns[name].append(values)
            topics.extend(batch_topics)
            batch.clear()
            records.clear()

        n = 0
        for text, record in rendered(source):
            batch.append(text)
            records.append(record)
            n += 1
            if len(batch) >= recipe.batch_size:
                flush()
        if batch:
            flush()
        merged = {name: np.concatenate(c) if c else np.zeros(0) for name, c in columns.items()}
        kept[source.name], per_source[source.name] = choose_records(spec, scoring, seed, n, merged, topics)
    return selection_report(spec, scoring, kept, per_source, scoring.cache.computed, scoring.cache.reused, log)
