"""The operations a data-build engine provides, and what they hand back to the pipeline.

The pipeline (data/build.py) owns the order of the stages, every check, every console
line, the timings, the ratio draw and the output; an engine only does the operations
below over its own representation of the records (numpy tables in this process for
the local engine, Ray Data blocks for the distributed one). An engine is one object
per build: each operation may keep what the next one needs.

Called in this order, each once (``select`` only when the recipe selects):

    start -> read -> split_heldout -> [deduplicate] -> [decontaminate] -> [select] -> tokenize
    -> mix -> order -> pack
    -> tokens_used -> describe

A new engine implements these; a new stage that works on one record at a time
(rendering, filtering) belongs where both engines render records
(``data.records.rendered``), so it is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ecomharness.data.heldout import HeldoutSplit
from ecomharness.data.recipe import DataRecipe


@dataclass
class RecordCounts:
    """What reading and tokenizing found, per source in recipe order."""

    reports: dict[str, Any]  # source name -> records.SourceReport (bad records by reason)
    records: np.ndarray  # good records that stay in training
    tokens: np.ndarray  # their tokens


@dataclass
class SampleList:
    """Every sample before the ratio draw, as the draw needs them (one entry each)."""

    uid: np.ndarray  # uint64 content identity
    kind: np.ndarray  # int8: samples.DOMAIN or samples.GENERAL
    language: np.ndarray  # int16 index into the recipe's sorted languages
    tokens: np.ndarray  # int64 tokens as packed
    mix: Any  # the mixer's counts and histograms (``counts``, ``cluster_sizes``, ``coverage``; len = samples)


@dataclass
class Ordering:
    """What the ordering stage reports: a curriculum's stats (None for the seeded
    shuffle) and its score-cache counts (printed, not written)."""

    curriculum: dict | None = None
    cache: dict | None = None


class Engine(Protocol):
    """A way to run a data build's operations (see the module docstring)."""

    name: str

    def start(self, recipe: DataRecipe, mixer: Callable, tokenizer, log: Callable[[str], None]) -> None:
        """Check what only this engine refuses (before anything is read) and get ready."""

    def read(self) -> None:
        """Read, render and tokenize every source now if this engine does it in one
        pass (the local engine streams the sources in each later operation instead)."""

    def split_heldout(self) -> HeldoutSplit | None:
        """Hold out the recipe's held-out share (None without ``heldout``); the rest
        goes on to training."""

    def deduplicate(self) -> tuple[list[dict], tuple | None]:
        """Drop duplicate training records and those equal to a held-out one, then near
        duplicates when the recipe asks (data/dedup.py); return ``dedup.group_summaries``
        of every group that lost one, and ``dedup.near_stats`` (or None)."""

    def decontaminate(self, index: Any, drop: bool) -> tuple[dict[int, int], dict[str, int]]:
        """Find the indexed task documents (``contamination.NgramIndex``) in the training
        records; with ``drop``, the records holding any leave training. Returns the
        records found per indexed document and per source name."""

    def select(self, log: Callable[[str], None]) -> Any:
        """Run the recipe's selection over what the held-out split left; return its
        ``select.stage.Selection`` (stats and cache counts)."""

    def tokenize(self) -> RecordCounts:
        """The records that go to training, tokenized; their counts and bad-record reports."""

    def mix(self, mixer: Callable, options: dict, separator: np.ndarray) -> SampleList:
        """The mixer's domain samples and one sample per general record."""

    def order(self, chosen: Any, scorer: Any, separator_text: str) -> Ordering:
        """Place the drawn samples (``ratio.Draw``) in shards: by seeded hashes, or by
        the curriculum ``scorer`` when there is one."""

    def pack(self, dataset_dir, pad_id: int) -> dict:
        """Pack the placed samples into ``dataset_dir``; return ``pack.finish_dataset``'s figures."""

    def tokens_used(self, chosen: Any) -> np.ndarray:
        """Per source, the tokens the drawn samples use (with repeats)."""

    def describe(self) -> dict | None:
        """What stats returned by the build say about the engine (None: nothing)."""
