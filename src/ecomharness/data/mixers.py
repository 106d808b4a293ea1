"""Mixers: how domain records become training samples.

``graph`` is EcomGPT-CT's data mixing. Records are nodes; records of *different* sources
sharing a linking key (product id) are joined by edges. Because one key joins every
record that carries it, the connected components are exactly the key groups that span
two or more sources, so the graph is never built: records are sorted by key and the
groups read off in one pass (near-linear; no pairwise edges). Each component is then
cut into clusters of ``min_records``..``max_records`` records, preferring clusters that
cover as many sources as possible; records left without a partner become single
samples and are counted. Records are shuffled within a cluster and concatenated with
the separator.

``separate`` is the paper's baseline: every record is its own sample, each source
sampled independently.

Every key group lands in one cluster set, and every choice inside a group depends only on
the group's records (their sources and content uids), not on their positions: a corpus
split by ``hash(key)`` mixes part by part with the same samples as a whole. The Ray
engine relies on this (``runs_per_key_group``); see docs/data.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ecomharness import registry
from ecomharness.data.identity import mix64, salt
from ecomharness.data.ratio import draw_to_target
from ecomharness.data.records import RecordTable
from ecomharness.errors import UserError


@dataclass
class Mix:
    """Samples as record indices: sample ``j`` is ``order[bounds[j]:bounds[j + 1]]``."""

    order: np.ndarray  # int64 row indices into the RecordTable
    bounds: np.ndarray  # int64, len = samples + 1
    counts: Counter = field(default_factory=Counter)
    cluster_sizes: Counter = field(default_factory=Counter)  # records per sample
    coverage: Counter = field(default_factory=Counter)  # distinct sources per sample

    def __len__(self) -> int:
        return len(self.bounds) - 1


def _option(options: dict, name: str, default, kind=int):
    value = options.get(name, default)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"mixer option {name!r}: expected {kind.__name__}, got {value!r}")
    return value


def _histograms(mix: Mix, table: RecordTable) -> Mix:
    sizes = np.diff(mix.bounds)
    mix.cluster_sizes = Counter({int(k): int(v) for k, v in zip(*np.unique(sizes, return_counts=True))})
    if len(mix.order):
        sources = table.source[mix.order].astype(np.int64)
        sample_of = np.repeat(np.arange(len(sizes)), sizes)
        distinct = np.unique(sample_of * 65536 + sources)  # one entry per (sample, source)
        per_sample = np.bincount(distinct // 65536, minlength=len(sizes))
        mix.coverage = Counter({int(k): int(v) for k, v in zip(*np.unique(per_sample, return_counts=True))})
    return mix


def separate(table: RecordTable, options: dict, seed: int) -> Mix:
    """Every record a sample of its own (the "Separate" baseline)."""
    if options:
        raise UserError(f"mixer 'separate' takes no options, got {sorted(options)}")
    rows = np.arange(len(table), dtype=np.int64)
    mix = Mix(order=rows, bounds=np.arange(len(rows) + 1, dtype=np.int64))
    mix.counts["single_samples"] = len(rows)
    return _histograms(mix, table)


def _split_component(rows: np.ndarray, sources: np.ndarray, lo: int, hi: int) -> tuple[list[np.ndarray], list[int]]:
    """Cut an oversized component into clusters, most-covering first.

    Each round takes one record from every source that still has records (those with
    the most left first, up to ``hi``), then fills the cluster up to ``hi`` from the
    largest sources. Rounds stop when fewer than two sources remain (the rest cannot
    be connected) or fewer than ``lo`` records; those records are left over.
    """
    pools: dict[int, list[int]] = {}
    for row, src in zip(rows.tolist(), sources.tolist()):
        pools.setdefault(src, []).append(row)
    clusters: list[np.ndarray] = []
    while sum(1 for p in pools.values() if p) >= 2 and sum(len(p) for p in pools.values()) >= max(lo, 2):
        by_size = sorted((src for src in pools if pools[src]), key=lambda s: (-len(pools[s]), s))
        cluster = [pools[src].pop() for src in by_size[:hi]]
        while len(cluster) < hi:
            fullest = max((src for src in pools if pools[src]), key=lambda s: (len(pools[s]), -s), default=None)
            if fullest is None:
                break
            cluster.append(pools[fullest].pop())
        clusters.append(np.asarray(cluster, dtype=np.int64))
    leftovers = [row for pool in pools.values() for row in pool]
    return clusters, leftovers


def graph(table: RecordTable, options: dict, seed: int) -> Mix:
    """EcomGPT-CT graph mixing over linking keys (see the module docstring)."""
    unknown = set(options) - {"min_records", "max_records"}
    if unknown:
        raise UserError(f"mixer 'graph': unknown option(s) {sorted(unknown)}; known: min_records, max_records")
    lo = _option(options, "min_records", 2)
    hi = _option(options, "max_records", 16)
    if not 1 <= lo <= hi:
        raise UserError(f"mixer 'graph': need 1 <= min_records <= max_records, got {lo} and {hi}")
    n = len(table)
    keys, sources, uids = table.key, table.source.astype(np.int64), table.uid
    counts: Counter = Counter()

    keyed = np.flatnonzero(keys >= 0)
    counts["records_without_key"] = int(n - len(keyed))
    # Inside a key group, records in (source, uid) order: what a group is cut into
    # depends on its content only, never on file or block positions.
    order = keyed[np.lexsort((uids[keyed], sources[keyed], keys[keyed]))]
    k_sorted = keys[order]
    starts = np.flatnonzero(np.r_[True, k_sorted[1:] != k_sorted[:-1]]) if len(order) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(order)].astype(np.int64)
    sizes = ends - starts
    s_sorted = sources[order]
    new_source = np.r_[True, (s_sorted[1:] != s_sorted[:-1]) | (k_sorted[1:] != k_sorted[:-1])] if len(order) else np.zeros(0, bool)
    n_sources = np.add.reduceat(new_source.astype(np.int64), starts) if len(order) else np.zeros(0, np.int64)

    connected = n_sources >= 2
    whole = connected & (sizes >= lo) & (sizes <= hi)
    too_big = connected & (sizes > hi)
    too_small = connected & (sizes < lo)
    unlinked = ~connected  # one source only: no edges, every record alone

    pieces: list[np.ndarray] = []
    singles: list[np.ndarray] = [np.flatnonzero(keys < 0)]
    # Whole components: one cluster each, kept in key order.
    for start, end in zip(starts[whole].tolist(), ends[whole].tolist()):
        pieces.append(order[start:end])
    for start, end in zip(starts[too_big].tolist(), ends[too_big].tolist()):
        rows = order[start:end]
        clusters, leftovers = _split_component(rows, sources[rows], lo, hi)
        pieces.extend(clusters)
        counts["split_components"] += 1
        counts["leftover_records"] += len(leftovers)
        singles.append(np.asarray(leftovers, dtype=np.int64))
    for start, end in zip(starts[too_small].tolist(), ends[too_small].tolist()):
        singles.append(order[start:end])
        counts["leftover_records"] += end - start
    unlinked_rows = [order[s:e] for s, e in zip(starts[unlinked].tolist(), ends[unlinked].tolist())]
    counts["unlinked_records"] = int(sum(len(r) for r in unlinked_rows))
    singles.extend(unlinked_rows)

    cluster_sizes = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    cluster_rows = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    # Shuffle within each cluster: sort by (cluster, seeded hash of the record), all at once.
    cluster_id = np.repeat(np.arange(len(pieces)), cluster_sizes)
    cluster_rows = cluster_rows[np.lexsort((mix64(uids[cluster_rows], salt(seed, "cluster")), cluster_id))]
    single_rows = np.sort(np.concatenate(singles)) if singles else np.zeros(0, np.int64)

    order_out = np.concatenate([cluster_rows, single_rows]).astype(np.int64)
    bounds = np.zeros(len(pieces) + len(single_rows) + 1, dtype=np.int64)
    np.cumsum(np.r_[cluster_sizes, np.ones(len(single_rows), np.int64)], out=bounds[1:])
    counts["clusters"] = len(pieces)
    counts["single_samples"] = len(single_rows)
    counts["records_in_clusters"] = int(cluster_sizes.sum())
    assert len(order_out) == n and len(np.unique(order_out)) == n, "every record is used exactly once"
    return _histograms(Mix(order=order_out, bounds=bounds, counts=counts), table)


# Mixers whose samples depend only on each key group's records: the Ray engine runs them
# on hash partitions of the keys (a plugin mixer may set the same attribute).
graph.runs_per_key_group = True
separate.runs_per_key_group = True

BUILTIN = {"graph": graph, "separate": separate}


def knowledge_mixture(table: RecordTable, options: dict, seed: int) -> Mix:
    """Mix-CPT's knowledge mixture: raw domain text and instruction-format samples in one
    stream, at a configured token share.

    ``instruction_sources`` names the domain sources holding instruction samples (e.g.
    the ``ecominstruct_sft`` format: general instructions and domain QA); every other
    domain record is raw text, mixed by ``graph`` (its ``min_records``/``max_records``).
    Instruction samples are drawn (seeded; repeated when there are too few) so that they
    make up ``instruction_share`` of the domain tokens. The packer interleaves all
    samples, so memorisation and use of the knowledge are learned together.
    """
    names = options.get("instruction_sources")
    if not isinstance(names, list) or not names:
        raise UserError("mixer 'knowledge_mixture': instruction_sources must list source names")
    unknown = [n for n in names if n not in table.source_names]
    if unknown:
        raise UserError(f"mixer 'knowledge_mixture': no domain source named {', '.join(unknown)} "
                        f"(domain sources: {', '.join(table.source_names)})")
    share = options.get("instruction_share", 0.25)
    if not isinstance(share, (int, float)) or not 0 < share < 1:
        raise UserError(f"mixer 'knowledge_mixture': instruction_share must be between 0 and 1, got {share!r}")
    extra = set(options) - {"instruction_sources", "instruction_share", "min_records", "max_records"}
    if extra:
        raise UserError(f"mixer 'knowledge_mixture': unknown option(s) {sorted(extra)}")
    codes = [table.source_names.index(n) for n in names]
    is_instruction = np.isin(table.source, codes)
    raw_rows, instruction_rows = np.flatnonzero(~is_instruction), np.flatnonzero(is_instruction)
    raw = graph(table.take(raw_rows), {k: options[k] for k in ("min_records", "max_records") if k in options}, seed)
    raw_tokens = float(table.n_tokens[raw_rows].sum())
    target = raw_tokens * share / (1 - share)
    picked = draw_to_target(instruction_rows, table.n_tokens.astype(np.int64), target,
                   mix64(table.uid, salt(seed, "instruction")))
    order = np.concatenate([raw_rows[raw.order], picked]).astype(np.int64)
    bounds = np.concatenate([raw.bounds, raw.bounds[-1] + np.arange(1, len(picked) + 1)]).astype(np.int64)
    counts = Counter(raw.counts)
    counts["instruction_samples"] = len(picked)
    counts["instruction_records_available"] = len(instruction_rows)
    instruction_tokens = int(table.n_tokens[picked].sum())
    counts["instruction_share_permille"] = round(1000 * instruction_tokens / max(instruction_tokens + raw_tokens, 1))
    return _histograms(Mix(order=order, bounds=bounds, counts=counts), table)


def mixer_options(recipe) -> tuple[dict, str]:
    """The mixer's own options, and the separator text that joins a sample's records
    (``mixer.separator``, default a newline), which is the build's, not the mixer's."""
    options = dict(recipe.mixer.options)
    return options, options.pop("separator", "\n")


def mix_counts(mix) -> dict:
    """A mix's counts and histograms as plain data: what stats.json shows, and what each
    partition of a distributed mix reports for the driver to sum."""
    return {"counts": dict(mix.counts), "cluster_sizes": dict(mix.cluster_sizes), "coverage": dict(mix.coverage),
            "samples": len(mix)}


@dataclass
class MixSummary:
    """Mixer counts and histograms summed over partitions (what stats.json shows)."""

    counts: Counter = field(default_factory=Counter)
    cluster_sizes: Counter = field(default_factory=Counter)
    coverage: Counter = field(default_factory=Counter)
    samples: int = 0

    def __len__(self) -> int:
        return self.samples

    def add(self, stats: dict) -> None:
        """Add one partition's ``mix_counts`` (``update`` keeps counters that are zero)."""
        self.counts.update(stats["counts"])
        self.cluster_sizes.update({int(k): v for k, v in stats["cluster_sizes"].items()})
        self.coverage.update({int(k): v for k, v in stats["coverage"].items()})
        self.samples += stats["samples"]


def empty_mix_counts(recipe) -> dict:
    """The recipe's mixer run over no records: the counts it reports for nothing (so a
    build without domain records shows the same keys whichever engine ran it)."""
    empty = np.zeros(0, np.int64)
    table = RecordTable(source=empty.astype(np.int16), language=empty.astype(np.int16), key=empty,
                        n_tokens=empty.astype(np.int32), starts=empty, ids=empty.astype(np.int32),
                        source_names=[s.name for s in recipe.sources], source_kinds=[s.kind for s in recipe.sources],
                        languages=sorted({s.language for s in recipe.sources}), uid=empty.astype(np.uint64))
    options, _ = mixer_options(recipe)
    return mix_counts(registry.mixers.get(recipe.mixer.name)(table, options, recipe.seed))
