"""The local engine of ``data build``: every operation in this process, over numpy tables.

Sources are streamed once per pass (held-out split, selection, then read + tokenize
with both masks), so memory grows with tokens, never with Python objects per record;
tokenization can use ``num_proc`` worker processes (data/records.py).
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np

from ecomharness import registry
from ecomharness.data import pack
from ecomharness.data.engine import Ordering, RecordCounts, SampleList
from ecomharness.data.dedup import (band_keys, choose, cluster_drops, group_summaries, near_stats, normalized_hash,
                                   signature, similar_pairs)
from ecomharness.data.heldout import HeldoutSplit, combine_masks, split_heldout
from ecomharness.data.identity import copy_numbers, record_uid
from ecomharness.data.recipe import DataRecipe
from ecomharness.data.records import SourceReport, build_table, render_source
from ecomharness.data.samples import sample_table, sample_texts
from ecomharness.select.curriculum import order_samples
from ecomharness.select.stage import run_selection


def rendered_records(recipe: DataRecipe, readers: dict):
    """``source -> (text, record) per good record``, rendered exactly as the build renders
    them (bad records raise or are skipped by ``on_error``; the build counts them)."""
    def rendered(source):
        records = readers[source.format](source.path, source.options)
        for _, text, record in render_source(source, records, recipe.on_error, SourceReport()):
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


class LocalEngine:
    """The operations of data/engine.py in this process (see the module docstring)."""

    name = "local"

    def start(self, recipe: DataRecipe, mixer, tokenizer, log) -> None:
        """Nothing to refuse: every mixer sees every domain record at once here."""
        self.recipe, self.tokenizer = recipe, tokenizer
        self.readers = {s.format: registry.data_sources.get(s.format) for s in recipe.sources}
        self.base = self.rendered = rendered_records(recipe, self.readers)
        self.keep = None  # the records still in training, as masks over each source's good records

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
            for ordinal, (key, text, _) in enumerate(render_source(source, records, recipe.on_error, SourceReport())):
                yield index, ordinal, key, text

    def deduplicate(self) -> tuple[list[dict], tuple | None]:
        """One pass over every good record (held-out ones included), the exact choice over
        all of them at once (``dedup.choose``), then near duplicates among the survivors
        (``_near``); a further pass only for the texts shown and the near candidates."""
        recipe = self.recipe
        near = recipe.dedup.near
        parts: dict[str, list] = {"norm": [], "uid": [], "order": [], "held": [], "source": []}
        band_rows = array("Q")  # every record's band keys, one after the other
        for index, ordinal, key, text in self._every_record():
            mask = (self.keep or {}).get(recipe.sources[index].name)
            parts["norm"].append(normalized_hash(text))
            parts["uid"].append(record_uid(recipe.sources[index].name, key, text))
            parts["order"].append((index << 40) | ordinal)
            parts["held"].append(mask is not None and not mask[ordinal])
            parts["source"].append(index)
            if near is not None:
                band_rows.extend(band_keys(signature(text, near), near))
        norm, uid, order = (np.asarray(parts[k], np.uint64) for k in ("norm", "uid", "order"))
        held, source = np.asarray(parts["held"], bool), np.asarray(parts["source"], np.int64)
        drop = choose(norm, uid, order, held)
        texts = self._texts_at(order, drop, norm, uid, held)
        groups = group_summaries(norm, uid, order, held, source, texts, drop)
        near_found = None
        if near is not None:
            near_drop, near_found = self._near(np.frombuffer(band_rows, np.uint64).reshape(len(norm), -1), drop,
                                               order, uid, held, source)
            drop = drop | near_drop
        within = {}
        for index, spec in enumerate(recipe.sources):
            mine = source == index
            within[spec.name] = ~drop[mine & ~held]
        self.keep = combine_masks(self.keep, within) if self.keep is not None else within
        self.rendered = _kept(self.base, self.keep)
        return groups, near_found

    def _near(self, band_matrix, exact_drop, order, uid, held, source):
        """Near duplicates among the records exact deduplication left: records sharing a
        band key are compared by signature (``dedup.similar_pairs``) and clustered
        (``dedup.cluster_drops``). Returns the records to drop and ``near_stats``."""
        near = self.recipe.dedup.near
        alive = np.flatnonzero(~exact_drop)
        keys = band_matrix[alive].ravel()
        rows = np.repeat(alive, band_matrix.shape[1])
        ranked = np.lexsort((rows, keys))
        keys, rows = keys[ranked], rows[ranked]
        starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1, len(keys)]
        buckets = [rows[a:b] for a, b in zip(starts[:-1], starts[1:]) if b - a > 1]
        candidates = set(int(r) for bucket in buckets for r in bucket)
        texts = {}
        for row, (_, _, _, text) in enumerate(self._every_record()):
            if row in candidates:
                texts[row] = text
        edges = []
        for bucket in buckets:
            for i, j in similar_pairs([texts[int(r)] for r in bucket], near):
                edges.append((int(order[bucket[i]]), int(order[bucket[j]])))
        texts = {int(order[r]): text for r, text in texts.items()}
        nodes = {int(order[r]): (int(uid[r]), bool(held[r]), int(source[r])) for r in candidates}
        dropped = cluster_drops(nodes, edges)
        row_of = {int(order[r]): r for r in candidates}
        near_drop = np.zeros(len(order), bool)
        near_drop[[row_of[k] for k in dropped]] = True
        return near_drop, near_stats(nodes, dropped, texts, [s.name for s in self.recipe.sources])

    def _texts_at(self, order, drop, norm, uid, held) -> list:
        """Texts of the records ``group_summaries`` shows (one per group that lost a
        record), read again; every other entry is None, so texts are not all held."""
        ranked = np.lexsort((order, uid, norm))
        training = ranked[~held[ranked]]
        # The first training record of each group in ranked order: the one kept, or shown.
        first = training[np.unique(norm[training], return_index=True)[1]]
        wanted_rows = first[np.isin(norm[first], np.unique(norm[drop]))].tolist()
        texts: list = [None] * len(order)
        wanted = {int(order[r]): r for r in wanted_rows}
        if not wanted:
            return texts
        recipe = self.recipe
        for index, source in enumerate(recipe.sources):
            records = self.readers[source.format](source.path, source.options)
            for ordinal, (_, text, _) in enumerate(render_source(source, records, recipe.on_error, SourceReport())):
                row = wanted.get((index << 40) | ordinal)
                if row is not None:
                    texts[row] = text
        return texts

    def decontaminate(self, index, drop: bool) -> tuple[dict[int, int], dict[str, int]]:
        """One pass over the training records, each checked against the index."""
        found: dict[int, int] = {}
        per_source: dict[str, int] = {}
        within = {}
        for source in self.recipe.sources:
            mask, hits = [], 0
            for text, _ in self.rendered(source):
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
        with _progress("read+tokenize") as bar:
            self.table, reports = build_table(self.recipe, self.readers, progress=bar, keep=self.keep)
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
