"""The local engine of ``data build``: every operation in this process, over numpy tables.

Sources are streamed once per pass (held-out split, selection, then read + tokenize
with both masks), so memory grows with tokens, never with Python objects per record;
tokenization can use ``num_proc`` worker processes (data/records.py).
"""

from __future__ import annotations

import mmap
import tempfile
from array import array
from pathlib import Path

import numpy as np

from ecomharness import registry
from ecomharness.data import pack
from ecomharness.data.engine import Ordering, RecordCounts, SampleList
from ecomharness.data.dedup import (band_key_matrix, choose, cluster_drops, group_summaries, near_stats, normalized_hash,
                                   bucket_edges, shingles, signature)
from ecomharness.data.heldout import HeldoutSplit, combine_masks, split_heldout
from ecomharness.data.identity import copy_numbers, record_uid
from ecomharness.data.recipe import DataRecipe
from ecomharness.data.records import FilterVerdicts, SourceReport, build_table, render_source
from ecomharness.data.samples import sample_table, sample_texts
from ecomharness.select.curriculum import order_samples
from ecomharness.select.stage import run_selection


def rendered_records(recipe: DataRecipe, readers: dict, verdicts: dict[str, FilterVerdicts] | None = None):
    """``source -> (text, record) per good record``, rendered exactly as the build renders
    them (bad records raise or are skipped by ``on_error``; the build counts them).
    ``verdicts``: filter verdicts shared by every pass, by source name."""
    def rendered(source):
        records = readers[source.format](source.path, source.options)
        for _, text, record in render_source(source, records, recipe.on_error, SourceReport(),
                                             (verdicts or {}).get(source.name)):
            yield text, record

    return rendered


def _kept(rendered, keep: dict[str, np.ndarray]):
    """``rendered`` without the records ``keep`` masks out (the held-out slice)."""

    def kept(source):
        mask = keep.get(source.name)
        for ordinal, pair in enumerate(rendered(source)):
            if mask is None or (ordinal < len(mask) and mask[ordinal]):
                yield pair

    return kept


def _progress(desc: str):
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit=" rec", mininterval=1.0, leave=False)


# Signatures turned into band keys this many at a time (numpy over a block of rows).
_SIGNATURE_CHUNK = 4096


def _shown_rows(order, drop, norm, uid, held) -> list[int]:
    """The record each exact group that lost one shows in the stats: its first training
    record in (norm, uid, reading order), the one kept."""
    ranked = np.lexsort((order, uid, norm))
    training = ranked[~held[ranked]]
    first = training[np.unique(norm[training], return_index=True)[1]]
    return first[np.isin(norm[first], np.unique(norm[drop]))].tolist()


def _near_buckets(band_matrix: np.ndarray, exact_drop: np.ndarray) -> list[np.ndarray]:
    """The rows sharing each band key that two or more records left by exact
    deduplication hold (each bucket in row order)."""
    alive = np.flatnonzero(~exact_drop)
    keys = band_matrix[alive].ravel()
    rows = np.repeat(alive, band_matrix.shape[1])
    ranked = np.lexsort((rows, keys))
    keys, rows = keys[ranked], rows[ranked]
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1, len(keys)]
    return [rows[a:b] for a, b in zip(starts[:-1], starts[1:]) if b - a > 1]


class TextSpill:
    """Every good record's rendered text, written once to an unlinked temporary file in
    the dedup pass and read back by row (rows in source, then reading order), so the
    passes after it (the texts the stats show, near candidates, decontamination) do not
    read and render every source again. On disk, not in this process's memory: the page
    cache holds what fits."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="ecomharness-texts-")
        self.ends = array("Q")
        self.size = 0
        self.view = None

    def add(self, text: str) -> None:
        """Append the next row's text."""
        data = text.encode("utf-8", "surrogatepass")
        self.file.write(data)
        self.size += len(data)
        self.ends.append(self.size)

    def text(self, row: int) -> str:
        """The text of ``row``."""
        if self.view is None:
            self.file.flush()
            self.view = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
        start = self.ends[row - 1] if row else 0
        return self.view[start:self.ends[row]].decode("utf-8", "surrogatepass")

    def close(self) -> None:
        """Give the file back (the build no longer needs it)."""
        if isinstance(self.view, mmap.mmap):
            self.view.close()
        self.file.close()


class LocalEngine:
    """The operations of data/engine.py in this process (see the module docstring)."""

    name = "local"

    def start(self, recipe: DataRecipe, mixer, tokenizer, log) -> None:
        """Nothing to refuse: every mixer sees every domain record at once here."""
        self.recipe, self.tokenizer = recipe, tokenizer
        self.readers = {s.format: registry.data_sources.get(s.format) for s in recipe.sources}
        # Each source is streamed once per pass; its filters run on the first only.
        self.verdicts = {s.name: FilterVerdicts() for s in recipe.sources}
        self.base = self.rendered = rendered_records(recipe, self.readers, self.verdicts)
        self.keep = None  # the records still in training, as masks over each source's good records
        self.spill = None  # every good record's text, from the dedup pass on (TextSpill)

    def read(self) -> None:
        """Nothing yet: each later pass streams the sources itself."""

    def split_heldout(self) -> HeldoutSplit | None:
        """One pass over the rendered records (data/heldout.py); later passes skip the held-out ones."""
        if self.recipe.heldout is None:
            return None
        split = split_heldout(self.recipe, self.recipe.heldout, self.rendered)
        self.keep = split.keep
        self.rendered = _kept(self.base, self.keep)
        return split

    def _every_record(self):
        """``(source index, ordinal, key, text)`` of every good record, held-out ones included."""
        recipe = self.recipe
        for index, source in enumerate(recipe.sources):
            records = self.readers[source.format](source.path, source.options)
            rendered = render_source(source, records, recipe.on_error, SourceReport(), self.verdicts[source.name])
            for ordinal, (key, text, _) in enumerate(rendered):
                yield index, ordinal, key, text

    def deduplicate(self) -> tuple[list[dict], tuple | None]:
        """One pass over every good record (held-out ones included) for its hashes and, with
        ``near``, its band keys; the exact choice over all of them at once
        (``dedup.choose``), then near duplicates among the survivors (``_near``). The pass
        spills every text (``TextSpill``); the texts the stats show and the near
        candidates' are read back from there, not from the sources."""
        recipe = self.recipe
        near = recipe.dedup.near
        parts: dict[str, list] = {"norm": [], "uid": [], "order": [], "held": [], "source": []}
        band_chunks, signatures = [], []
        self.spill, self.rows = TextSpill(), {}
        for index, ordinal, key, text in self._every_record():
            self.spill.add(text)
            self.rows.setdefault(index, len(parts["norm"]))  # the source's first row
            mask = (self.keep or {}).get(recipe.sources[index].name)
            parts["norm"].append(normalized_hash(text))
            parts["uid"].append(record_uid(recipe.sources[index].name, key, text))
            parts["order"].append((index << 40) | ordinal)
            parts["held"].append(mask is not None and not mask[ordinal])
            parts["source"].append(index)
            if near is not None:
                signatures.append(signature(text, near))
                if len(signatures) == _SIGNATURE_CHUNK:  # keys a chunk at a time: 21 keys hold less than 128 values
                    band_chunks.append(band_key_matrix(np.stack(signatures), near))
                    signatures = []
        if near is not None and signatures:
            band_chunks.append(band_key_matrix(np.stack(signatures), near))
        norm, uid, order = (np.asarray(parts[k], np.uint64) for k in ("norm", "uid", "order"))
        held, source = np.asarray(parts["held"], bool), np.asarray(parts["source"], np.int64)
        drop = choose(norm, uid, order, held)
        shown = _shown_rows(order, drop, norm, uid, held)
        buckets = []
        if near is not None and len(norm):
            buckets = _near_buckets(np.concatenate(band_chunks), drop)
        texts = self._texts_at(order, set(shown) | {int(r) for bucket in buckets for r in bucket})
        groups = group_summaries(norm, uid, order, held, source, texts, drop)
        near_found = None
        if near is not None:
            near_drop, near_found = self._near(buckets, texts, order, uid, held, source)
            drop = drop | near_drop
        within = {}
        for index, spec in enumerate(recipe.sources):
            mine = source == index
            within[spec.name] = ~drop[mine & ~held]
        self.keep = combine_masks(self.keep, within) if self.keep is not None else within
        self.rendered = _kept(self.base, self.keep)
        return groups, near_found

    def _near(self, buckets, texts, order, uid, held, source):
        """Near duplicates among the records exact deduplication left: records sharing a
        band key (``buckets``) are compared by their shingles (``dedup.bucket_edges``)
        and clustered (``dedup.cluster_drops``). Returns the records to drop and
        ``near_stats``."""
        near = self.recipe.dedup.near
        candidates = {int(r) for bucket in buckets for r in bucket}
        sets = {r: set(shingles(texts[r], near)) for r in candidates}
        edges = [(int(order[a]), int(order[b])) for a, b in bucket_edges(buckets, sets, near.threshold)]
        del sets
        nodes = {int(order[r]): (int(uid[r]), bool(held[r]), int(source[r])) for r in candidates}
        dropped = cluster_drops(nodes, edges)
        row_of = {int(order[r]): r for r in candidates}
        near_drop = np.zeros(len(order), bool)
        near_drop[[row_of[k] for k in dropped]] = True
        shown = {int(order[r]): texts[r] for r in candidates}
        return near_drop, near_stats(nodes, dropped, shown, [s.name for s in self.recipe.sources])

    def _texts_at(self, order, rows: set[int]) -> list:
        """The texts of ``rows`` (from the spill); every other entry is None."""
        texts: list = [None] * len(order)
        for row in rows:
            texts[row] = self.spill.text(row)
        return texts

    def _training_texts(self, source_index: int):
        """The texts of a source's records still in training, in reading order: from the
        spill when dedup made one, else read and rendered again."""
        source = self.recipe.sources[source_index]
        spill = self.spill
        if spill is None:
            yield from (text for text, _ in self.rendered(source))
            return
        first = self.rows.get(source_index, 0)
        for ordinal in np.flatnonzero(self.keep[source.name]):
            yield spill.text(first + int(ordinal))

    def decontaminate(self, index, drop: bool) -> tuple[dict[int, int], dict[str, int]]:
        """One pass over the training records, each checked against the index."""
        found: dict[int, int] = {}
        per_source: dict[str, int] = {}
        within = {}
        for source_index, source in enumerate(self.recipe.sources):
            mask, hits = [], 0
            for text in self._training_texts(source_index):
                matched = index.matches(text)
                for doc in matched:
                    found[doc] = found.get(doc, 0) + 1
                hits += bool(matched)
                mask.append(not (drop and matched))
            per_source[source.name] = hits
            within[source.name] = np.asarray(mask, bool)
        self.keep = combine_masks(self.keep, within) if self.keep is not None else within
        self.rendered = _kept(self.base, self.keep)
        return found, per_source

    def select(self, log):
        """Score and choose over the records the held-out split left (select/stage.py)."""
        selection = run_selection(self.recipe, self.recipe.select, self.rendered, log=log)
        self.keep = combine_masks(self.keep, selection.kept)
        return selection

    def tokenize(self) -> RecordCounts:
        """Read, render and tokenize the records both masks keep into one ``RecordTable``."""
        if self.spill is not None:  # read and rendered again below, with their keys
            self.spill.close()
            self.spill = None
        with _progress("read+tokenize") as bar:
            self.table, reports = build_table(self.recipe, self.readers, progress=bar, keep=self.keep,
                                                   verdicts=self.verdicts)
        n = len(self.recipe.sources)
        return RecordCounts(reports=reports, records=np.bincount(self.table.source, minlength=n),
                            tokens=np.bincount(self.table.source, weights=self.table.n_tokens, minlength=n))

    def mix(self, mixer, options: dict, separator: np.ndarray) -> SampleList:
        """The mixer over every domain record at once, then one sample per general record."""
        table = self.table
        domain_rows, general_rows = table.rows_of_kind("domain"), table.rows_of_kind("general")
        mix = mixer(table.take(domain_rows), options, self.recipe.seed)
        self.separator = separator
        self.samples = sample_table(table, domain_rows, general_rows, mix, len(separator))
        s = self.samples
        return SampleList(uid=s.uid, kind=s.kind, language=s.language, tokens=s.tokens, mix=mix)

    def order(self, chosen, scorer, separator_text: str) -> Ordering:
        """Shards by seeded hashes of content, or the curriculum's one order cut into
        consecutive stretches."""
        recipe, samples = self.recipe, self.samples
        if scorer is None:
            # Domain and general samples interleave, by seeded hashes of their content.
            self.shard_order = [chosen.samples[positions] for positions in
                                pack.shard_orders(samples.uid[chosen.samples], recipe.seed + 1, recipe.shards)]
            return Ordering()
        spec = recipe.curriculum
        cache_dir = Path(spec.cache_dir or recipe.output.parent / ".selection-cache")
        texts = sample_texts(self.table, samples, self.tokenizer, separator_text)
        # Scored and staged from a canonical order (by uid and copy number), so ties and
        # the shuffle inside stages do not depend on where the draw listed a sample.
        uids = samples.uid[chosen.samples]
        canonical = chosen.samples[np.lexsort((copy_numbers(uids), uids))]
        ordered, stats, cache = order_samples(spec, scorer, canonical, texts, cache_dir, recipe.seed + 1)
        self.shard_order = np.array_split(ordered, recipe.shards)
        return Ordering(curriculum=stats, cache=cache)

    def pack(self, dataset_dir, pad_id: int) -> dict:
        """Every shard's samples as one token stream, cut into blocks (data/pack.py)."""
        samples = self.samples
        streams = [pack.sample_token_stream(self.table, samples.order, samples.bounds, order, self.separator,
                                            self.tokenizer.eos_token_id) for order in self.shard_order]
        return pack.write_blocks(streams, self.recipe.seq_len, pad_id, dataset_dir)

    def tokens_used(self, chosen) -> np.ndarray:
        """Per source, the drawn samples' tokens with repeats."""
        table, samples = self.table, self.samples
        uses = np.bincount(chosen.samples, minlength=len(samples))
        row_uses = np.repeat(uses, samples.sizes)
        order = samples.order
        return np.bincount(table.source[order], weights=table.n_tokens[order] * row_uses,
                           minlength=len(table.source_names))

    def describe(self) -> None:
        """Nothing: stats.json is the same whichever engine ran."""
        return None
