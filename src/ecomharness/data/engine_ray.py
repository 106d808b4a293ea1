"""The Ray engine of ``data build`` (``--engine ray``): the operations of data/engine.py
as Ray Data stages. The pipeline (data/build.py) runs them in order and does the rest.

    read + render + validate + held-out split  (one read task per piece of a source, as
                                                its reader cuts it: a JSON Lines byte
                                                range, a Parquet row-group run, a CSV file)
    -> tokenize                                 (map_batches; a tokenizer per worker)
    -> mix                                      (groupby(hash partition of the key)
                                                .map_groups: the recipe's mixer on each
                                                partition, so every key group is whole)
    -> ratio draw                               (on the driver, over 4 numbers a sample)
    -> copy, shard and pack                     (groupby(shard).map_groups: each shard
                                                sorted and packed by one task)

Every choice comes from seeded hashes of record content (data/identity.py), so the
output is the local engine's, byte for byte, for any number of blocks or workers: the
same shards, ``state.json`` and ``stats.json`` (the engine's name is only in the stats
returned, not written). A stage whose worker dies is retried by Ray; each
stage is a pure function of its input block and the shard files are rewritten whole, so
a retry cannot duplicate samples.

The output folder must be one every worker can write (one machine, or a shared file
system on a cluster). What stays on the driver: the recipe, the per-piece bad-record
reports, the held-out documents (the ``max_documents`` lowest draws per folder, merged
from each block's own) and the ratio draw over (uid, kind, language, tokens) per sample.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomharness.data import pack
from ecomharness.data.dedup import (EXAMPLE_CHARS, band_keys, choose, cluster_drops, group_summaries, near_stats,
                                   normalized_hash, signature, similar_pairs)
from ecomharness.data.engine import Ordering, RecordCounts, SampleList
from ecomharness.data.heldout import HeldoutSplit, first_documents, folder_of, held_document
from ecomharness.data.identity import pack_keys, record_uid, sample_uids
from ecomharness.data.mixers import MixSummary, empty_mix_counts, mix_counts, mixer_options
from ecomharness.data.recipe import DataRecipe
from ecomharness.data.records import (RecordTable, SourceReport, encode_texts, load_tokenizer, render_source,
                                      separator_ids)
from ecomharness.data.sources import SourcePiece, read_source_piece, source_pieces
from ecomharness.errors import UserError
from ecomharness.registry import data_sources, mixers
from ecomharness.select.cache import ScoreCache
from ecomharness.select.curriculum import curriculum_order
from ecomharness.select.scorers import build_scorer
from ecomharness.select.stage import SelectionScoring, choose_records, selection_report

# A worker that dies (killed, out of memory) has its task run again this many times.
TASK_RETRIES = 3
RETRIES = {"max_retries": TASK_RETRIES}
# Ray reads a JSON Lines file in byte ranges of about this size when no block count is given.
DEFAULT_BLOCK_BYTES = 128 << 20

FAULT_ENV = "ECOMHARNESS_RAY_FAULT"  # see _maybe_fail (tests)


# ----------------------------------------------------------------------------- reading


class InputError(Exception):
    """A ``UserError`` raised inside a Ray task, carried as its message alone: some
    ``UserError`` subclasses (a ``RecordError`` with its file and line) do not survive
    Ray's pickling, and the driver raises it again as a ``UserError``."""


def _input_errors(fn):
    """Run ``fn`` in a Ray task with its ``UserError`` turned into an ``InputError``."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise InputError(str(exc)) from None

    return wrapped


@dataclass(frozen=True)
class Piece:
    """One read task: a piece (``sources.SourcePiece``) of the recipe's source ``source``."""

    source: int
    piece: SourcePiece


def plan_pieces(recipe: DataRecipe, blocks: int | None) -> list[Piece]:
    """Cut every source into read pieces, in reading order, by its reader's own
    ``pieces`` (data/sources.py): about ``blocks`` pieces over all sources that can be
    cut (default: about ``DEFAULT_BLOCK_BYTES`` each); a source that cannot is one piece."""
    readers = [data_sources.get(s.format) for s in recipe.sources]
    whole_files = [source_pieces(r, s.path, s.options, None) for r, s in zip(readers, recipe.sources)]
    total = sum(p.size for pieces in whole_files for p in pieces)
    target = max(1, -(-total // blocks)) if blocks else DEFAULT_BLOCK_BYTES
    return [Piece(index, piece) for index, (reader, source) in enumerate(zip(readers, recipe.sources))
            for piece in source_pieces(reader, source.path, source.options, target)]


RECORD_COLUMNS = ("piece", "row", "source", "language", "key", "uid", "norm", "part", "text", "held", "report",
                  "topic_field")


@_input_errors
def read_piece(recipe: DataRecipe, piece_index: int, piece: Piece, partitions: int):
    """Render and validate one piece's records; return them as a pyarrow table.

    Good records that stay in training get ``text``; held-out ones get ``held`` (their
    document and draw as JSON); the piece's bad-record report is one extra row whose
    ``report`` column holds it, so the driver can merge reports in reading order."""
    _maybe_fail("read")
    source = recipe.sources[piece.source]
    language = sorted({s.language for s in recipe.sources}).index(source.language)
    report = SourceReport()
    columns: dict[str, list] = {name: [] for name in RECORD_COLUMNS}
    select = recipe.select
    topic_field = (select.balance or {}).get("field") if select is not None and source.name in select.sources else None
    records = read_source_piece(data_sources.get(source.format), piece.piece, source.options)
    for row, (key, text, record) in enumerate(render_source(source, records, recipe.on_error, report)):
        uid = record_uid(source.name, key, text)
        columns["row"].append(row)
        value = record.get(topic_field) if topic_field else None
        columns["topic_field"].append(None if value in (None, "") else str(value))
        held = None
        if recipe.heldout is not None:
            doc, order = held_document(recipe.seed, recipe.heldout, source, text, record)
            if doc is not None:
                held = json.dumps([order, doc], ensure_ascii=False)
        columns["key"].append(key)
        columns["uid"].append(uid)
        columns["norm"].append(normalized_hash(text) if recipe.dedup is not None else 0)
        columns["part"].append(partition_of(key, uid, partitions))
        columns["text"].append(None if held else text)
        columns["held"].append(held)
        columns["report"].append(None)
    columns["row"].append(-1)
    columns["topic_field"].append(None)
    columns["key"].append(None)
    columns["uid"].append(0)
    columns["norm"].append(0)
    columns["part"].append(0)
    columns["text"].append(None)
    columns["held"].append(None)
    columns["report"].append(json.dumps(report.as_dict(), ensure_ascii=False))
    n = len(columns["uid"])
    columns["piece"] = [piece_index] * n
    columns["source"] = [piece.source] * n
    columns["language"] = [language] * n
    return pa.table({
        "piece": pa.array(columns["piece"], pa.int32()), "row": pa.array(columns["row"], pa.int64()),
        "source": pa.array(columns["source"], pa.int16()),
        "language": pa.array(columns["language"], pa.int16()), "key": pa.array(columns["key"], pa.string()),
        "uid": pa.array(columns["uid"], pa.uint64()), "norm": pa.array(columns["norm"], pa.uint64()),
        "part": pa.array(columns["part"], pa.int32()),
        "text": pa.array(columns["text"], pa.string()), "held": pa.array(columns["held"], pa.string()),
        "report": pa.array(columns["report"], pa.string()),
        "topic_field": pa.array(columns["topic_field"], pa.string()),
    })


def partition_of(key: str | None, uid: int, partitions: int) -> int:
    """The mix partition of a record: by its key (so a key group is never split), by
    its uid when it has none."""
    if key is None:
        return uid % partitions
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") % partitions


def _datasource(recipe: DataRecipe, pieces: list[Piece], partitions: int):
    """A Ray Data datasource with one read task per piece."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    def metadata(piece: Piece):
        try:
            return BlockMetadata(num_rows=None, size_bytes=piece.piece.size or None, input_files=[piece.piece.path],
                                 exec_stats=None)
        except TypeError:  # Ray releases before 2.43 keep the schema in the metadata
            return BlockMetadata(num_rows=None, size_bytes=piece.piece.size or None, schema=None,
                                 input_files=[piece.piece.path], exec_stats=None)

    class SourcePieces(Datasource):
        def estimate_inmemory_data_size(self):
            return sum(p.piece.size for p in pieces) or None

        def get_read_tasks(self, parallelism, *args, **kwargs):
            return [ReadTask(lambda i=i, p=p: [read_piece(recipe, i, p, partitions)], metadata(p))
                    for i, p in enumerate(pieces)]

    return SourcePieces()


# ----------------------------------------------------------------------------- stages

_TOKENIZERS: dict[str, object] = {}


def _tokenizer(name: str):
    if name not in _TOKENIZERS:  # once per worker process

        _TOKENIZERS[name] = load_tokenizer(name)
    return _TOKENIZERS[name]


@_input_errors
def tokenize_batch(batch, tokenizer_name: str, keep_text: bool = False):
    """Add ``ids`` (list of int32) to the rows that have text; other rows get none. The
    text is dropped unless selection still has to score it (``keep_text``)."""
    _maybe_fail("tokenize")
    texts = batch.column("text").to_pylist()
    present = [t for t in texts if t is not None]
    encoded = iter(encode_texts(_tokenizer(tokenizer_name), present))
    ids = [next(encoded) if t is not None else [] for t in texts]
    if not keep_text:
        batch = batch.drop_columns(["text"])
    return batch.append_column("ids", pa.array(ids, pa.list_(pa.int32())))


def _record_table(batch, recipe: DataRecipe):
    """A partition of records as the local engine's ``RecordTable``."""
    ids_column = batch.column("ids").combine_chunks()
    n_tokens = pc.list_value_length(ids_column).to_numpy(zero_copy_only=False).astype(np.int32)
    starts = np.zeros(len(n_tokens), np.int64)
    np.cumsum(n_tokens[:-1], out=starts[1:])
    keys = pc.dictionary_encode(batch.column("key").combine_chunks())
    codes = keys.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return RecordTable(
        source=batch.column("source").to_numpy().astype(np.int16),
        language=batch.column("language").to_numpy().astype(np.int16),
        key=codes, n_tokens=n_tokens, starts=starts,
        ids=ids_column.flatten().to_numpy(zero_copy_only=False).astype(np.int32),
        source_names=[s.name for s in recipe.sources], source_kinds=[s.kind for s in recipe.sources],
        languages=sorted({s.language for s in recipe.sources}), uid=batch.column("uid").to_numpy().astype(np.uint64),
    )


def _sample_rows(table, order: np.ndarray, bounds: np.ndarray, kind: int, separator: np.ndarray, eos: int,
                 mix_stats: str | None = None):
    """Samples (runs of ``order`` cut by ``bounds``) as rows: their packed ids, uid, kind,
    language, packed length and tokens per source; plus one row of mixer stats."""
    sizes = np.diff(bounds)
    n_samples, n_sources = len(sizes), len(table.source_names)
    uids = sample_uids(table.uid[order], bounds)
    lengths = table.n_tokens[order].astype(np.int64)
    flat, offsets = pack.sample_ids(table, order, bounds, separator, eos)
    sample_tokens = np.diff(offsets)
    sample_of_record = np.repeat(np.arange(n_samples), sizes)
    per_source = np.bincount(sample_of_record * n_sources + table.source[order], weights=lengths,
                             minlength=n_samples * n_sources).astype(np.int64)
    source_offsets = np.arange(n_samples + 1, dtype=np.int64) * n_sources
    language = table.language[order[bounds[:-1]]] if n_samples else np.zeros(0, np.int16)
    columns = {
        "uid": pa.array(uids, pa.uint64()), "kind": pa.array(np.full(n_samples, kind, np.int8)),
        "language": pa.array(language.astype(np.int16)),
        "tokens": pa.array(sample_tokens.astype(np.int64)),
        "ids": pa.LargeListArray.from_arrays(offsets, pa.array(flat, pa.int32())).cast(pa.list_(pa.int32())),
        "source_tokens": pa.ListArray.from_arrays(pa.array(source_offsets.astype(np.int32)), pa.array(per_source)),
        "record_tokens": pa.ListArray.from_arrays(pa.array(bounds.astype(np.int32)),
                                                  pa.array(lengths.astype(np.int32))),
        "mix_stats": pa.array([None] * n_samples, pa.string()),
    }
    out = pa.table(columns)
    if mix_stats is not None:
        stats_row = pa.table({
            "uid": pa.array([0], pa.uint64()), "kind": pa.array([-1], pa.int8()), "language": pa.array([0], pa.int16()),
            "tokens": pa.array([0], pa.int64()), "ids": pa.array([[]], pa.list_(pa.int32())),
            "source_tokens": pa.array([[]], pa.list_(pa.int64())), "record_tokens": pa.array([[]], pa.list_(pa.int32())),
            "mix_stats": pa.array([mix_stats], pa.string()),
        })
        out = pa.concat_tables([out, stats_row])
    return out


@_input_errors
def mix_partition(batch, recipe: DataRecipe, separator: np.ndarray, eos: int):
    """The recipe's mixer over one hash partition of the domain records (every key group
    whole), as sample rows plus one row of the mixer's counts."""
    _maybe_fail("mix")

    table = _record_table(batch, recipe)
    mix = mixers.get(recipe.mixer.name)(table, mixer_options(recipe)[0], recipe.seed)
    return _sample_rows(table, mix.order, mix.bounds, 0, separator, eos, json.dumps(mix_counts(mix)))


@_input_errors
def general_samples(batch, recipe: DataRecipe, separator: np.ndarray, eos: int, codes: list[int]):
    """One sample per general record of the block (the record, then EOS)."""
    table = _record_table(training_rows(batch, codes), recipe)
    rows = np.arange(len(table), dtype=np.int64)
    return _sample_rows(table, rows, np.arange(len(rows) + 1, dtype=np.int64), 1, separator, eos)


@_input_errors
def copies_batch(batch, chosen_uids, chosen_counts, seed: int, shards: int, placement=None):
    """Every drawn copy of the batch's samples with its shard and packing key. Rows of
    equal uid (equal content) each emit all copies; the shard task keeps one of each.
    ``placement`` (a curriculum's order): the shard and key of every copy, listed by
    (uid, copy number); without it both come from seeded hashes."""
    _maybe_fail("copy")
    uids = batch.column("uid").to_numpy()
    counts = np.zeros(len(uids), np.int64)
    if len(chosen_uids):
        where = np.minimum(np.searchsorted(chosen_uids, uids), len(chosen_uids) - 1)
        found = (chosen_uids[where] == uids) & (batch.column("kind").to_numpy() >= 0)  # not a mixer-stats row
        counts = np.where(found, chosen_counts[where], 0)
    rows = np.repeat(np.arange(len(uids)), counts)
    copy = (np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int64)
    if placement is None:
        shard, key = pack_keys(uids[rows], copy, seed + 1, shards)
    else:
        first = np.cumsum(chosen_counts) - chosen_counts  # each uid's first copy in placement
        entry = first[np.searchsorted(chosen_uids, uids[rows])] + copy
        shard, key = placement[0][entry], placement[1][entry]
    taken = batch.take(pa.array(rows, pa.int64()))
    return pa.table({"shard": pa.array(shard, pa.int32()), "key": pa.array(key, pa.uint64()),
                     "uid": taken.column("uid"), "copy": pa.array(copy, pa.int64()), "ids": taken.column("ids")})


@_input_errors
def pack_shard(batch, out_dir: str, seq_len: int, pad_id: int, shards: int):
    """Sort one shard's copies into packing order and write the shard file."""
    _maybe_fail("pack")
    index = int(batch.column("shard")[0].as_py())
    uids = batch.column("uid").to_numpy()
    copies = batch.column("copy").to_numpy()
    keys = batch.column("key").to_numpy()
    order = pack.within_shard_order(keys, uids, copies)
    # Rows of equal content each emitted every copy: keep the first of each (uid, copy).
    ordered = np.stack([uids[order], copies[order].astype(np.uint64)], axis=1)
    first = np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)] if len(order) else np.zeros(0, bool)
    order = order[first]
    ids = batch.column("ids")

    def stream():
        for begin in range(0, len(order), 4096):
            chunk = ids.take(pa.array(order[begin:begin + 4096], pa.int64())).combine_chunks()
            yield chunk.flatten().to_numpy(zero_copy_only=False).astype(np.int32)

    result = pack.write_shard(stream(), seq_len, pad_id, Path(out_dir) / pack.shard_file(index, shards))
    return pa.table({"shard": [index], "result": [json.dumps(result)]})


def _maybe_fail(stage: str) -> None:
    """Fault injection for tests: ``ECOMHARNESS_RAY_FAULT=STAGE:MARKER[,STAGE:MARKER]``
    makes the first task of each STAGE kill its worker process, once (the marker file
    records that it happened)."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        name, _, marker = item.partition(":")
        if name != stage or not marker:
            continue
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)


# ----------------------------------------------------------------------------- the build


# How long the scorer actors may take to start before the build stops with an error.
STALL_TIMEOUT_S = 600.0

# How long a cluster's head may take to accept a connection before the build gives up.
CONNECT_TIMEOUT_S = 10.0


def _probe(address: str | None) -> None:
    """``UserError`` at once when nothing listens at a ``host:port`` cluster address:
    ``ray.init`` would otherwise retry for minutes without a word. ``auto``, ``local``
    and ``ray://`` client addresses are left to Ray."""
    if not address or address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT (the head node's GCS port), auto or ray://...")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there within {CONNECT_TIMEOUT_S:g} s "
                        f"({exc.strerror or exc}); start one with `ray start --head` or check the address") from exc


def start_ray(address: str | None, log) -> None:
    """Connect to the cluster at ``address`` (or ``RAY_ADDRESS``), else start Ray on this
    machine; quiet Ray Data's progress bars (the build prints its own stages)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise UserError("--engine ray needs Ray Data: pip install 'ecomharness[ray]'") from exc
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    _probe(address or os.environ.get("RAY_ADDRESS"))
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc})") from exc
    resources = ray.cluster_resources()
    log(f"[data] ray: {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs "
        f"on {len(ray.nodes())} node(s)")


def _resources() -> str:
    """The cluster's free CPUs and GPUs, in words."""
    import ray

    free = ray.available_resources()
    return f"{free.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} GPUs free"


def _asks(pool: dict) -> str:
    return f"{pool.get('num_cpus', 1):g} CPU" + (f" and {pool['num_gpus']:g} GPU" if pool.get("num_gpus") else "")


def _user_error(exc: BaseException) -> UserError | None:
    """The input error a Ray task raised, under Ray's wrappers, as a ``UserError``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InputError):
            return UserError(exc.args[0] if exc.args else str(exc))
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def _driver_errors(method):
    """Run an engine operation with the input error a Ray task raised, under Ray's
    wrappers, raised again as the ``UserError`` it was."""
    @functools.wraps(method)
    def wrapped(engine, *args, **kwargs):
        try:
            return method(engine, *args, **kwargs)
        except UserError:
            raise
        except Exception as exc:
            found = _user_error(exc)
            if found is not None:
                raise found from None
            if _stalled(exc):
                raise UserError(
                    f"the scorer actors did not start within {engine.stall_timeout:g} s: the cluster "
                    f"({_resources()}) cannot place one (each asks for {_asks(engine.actors)}); free or add those "
                    "resources, lower --scorer-actors, or wait longer with --stall-timeout") from None
            raise

    return wrapped


class RayEngine:
    """The operations of data/engine.py as Ray Data stages (see the module docstring).

    ``address``: the cluster to join (default ``RAY_ADDRESS``, else Ray on this machine);
    ``blocks``: read pieces to aim for; ``scorer_actors``: the pool of selection and
    curriculum scorer actors (default one per GPU of the cluster, else one)."""

    name = "ray"

    def __init__(self, address: str | None = None, blocks: int | None = None, scorer_actors: int | None = None,
                 stall_timeout: float = STALL_TIMEOUT_S):
        self.address, self.blocks, self.scorer_actors = address, blocks, scorer_actors
        self.stall_timeout = stall_timeout

    def start(self, recipe: DataRecipe, mixer, tokenizer, log) -> None:
        """Refuse a mixer that needs every record at once, join or start Ray, cut the
        sources into read pieces."""
        if self.blocks is not None and self.blocks < 1:
            raise UserError(f"--blocks: expected a whole number >= 1, got {self.blocks}")
        if self.scorer_actors is not None and self.scorer_actors < 1:
            raise UserError(f"--scorer-actors: expected a whole number >= 1, got {self.scorer_actors}")
        if not isinstance(self.stall_timeout, (int, float)) or isinstance(self.stall_timeout, bool) \
                or not 1 <= self.stall_timeout <= 7 * 86400:
            raise UserError(f"--stall-timeout: expected seconds from 1 to 604800, got {self.stall_timeout!r}")
        if not getattr(mixer, "runs_per_key_group", False):
            raise UserError(f"mixer {recipe.mixer.name!r} needs every record at once, which the ray engine does not "
                            "give it (its mixers run per hash partition of the keys): use --engine local")
        self.recipe, self.tokenizer = recipe, tokenizer
        start_ray(self.address, log)
        import ray.data

        # Ray Data waits for an actor pool forever by default: a pool the cluster cannot
        # place would hang the build without a word.
        ray.data.DataContext.get_current().wait_for_min_actors_s = math.ceil(self.stall_timeout)
        self.actors = _actor_pool(self.scorer_actors)
        self.pieces = plan_pieces(recipe, self.blocks)
        self.partitions = max(1, self.blocks or len(self.pieces))
        log(f"[data] ray: {len(recipe.sources)} source(s) in {len(self.pieces)} read piece(s), "
            f"{self.partitions} mix partition(s), {recipe.shards} output shard(s)")

    @_driver_errors
    def read(self) -> None:
        """One pass: read, render, validate, draw the held-out share and tokenize every
        piece (materialized); bad-record reports and held-out documents come back to
        the driver, merged in reading order."""
        import ray.data

        recipe = self.recipe
        # Read tasks are retried by Ray core's default for tasks (3) when their worker dies.
        records = ray.data.read_datasource(_datasource(recipe, self.pieces, self.partitions),
                                           override_num_blocks=len(self.pieces))
        self.records = records.map_batches(tokenize_batch, fn_kwargs={
            "tokenizer_name": recipe.tokenizer,
            "keep_text": any(step is not None for step in (recipe.select, recipe.dedup, recipe.decontaminate))},
            batch_format="pyarrow", batch_size=recipe.batch_size, **RETRIES).materialize()
        side = self.records.map_batches(_side_rows, fn_kwargs={
            "limit": recipe.heldout.max_documents if recipe.heldout else 0}, batch_format="pyarrow",
            **RETRIES).take_all()
        self.reports = {s.name: SourceReport() for s in recipe.sources}
        for row in sorted((r for r in side if r["report"] is not None), key=lambda r: r["piece"]):
            self.reports[recipe.sources[row["source"]].name].merge(json.loads(row["report"]))
        held_counts = {s.name: 0 for s in recipe.sources}
        candidates: dict[str, list] = {}
        for row in side:
            source = recipe.sources[row["source"]]
            if row["held"] is not None:
                order, doc = json.loads(row["held"])
                candidates.setdefault(folder_of(source), []).append((order, doc))
            held_counts[source.name] += row["held_count"]
        self.heldout = None
        if recipe.heldout is not None:
            self.heldout = HeldoutSplit(keep={}, held=held_counts, documents={
                folder: first_documents(items, recipe.heldout.max_documents) for folder, items in candidates.items()})

    def split_heldout(self) -> HeldoutSplit | None:
        """Already drawn while reading: each record's draw depends on the record alone."""
        return self.heldout

    @_driver_errors
    def deduplicate(self) -> tuple[list[dict], tuple | None]:
        """Group every good record by its normalised text (a hash shuffle, so no driver
        holds them all), choose per group (``dedup.choose``, the local engine's rule),
        and drop the chosen records from training; then near duplicates (``_near``)."""
        rows = self.records.map_batches(_dedup_rows, batch_format="pyarrow", **RETRIES)
        found = rows.groupby("norm", num_partitions=self.partitions).map_groups(
            _dedup_group, batch_format="pyarrow", **RETRIES).take_all()
        dropped = np.sort(np.asarray([r["key"] for r in found if r["key"] >= 0], np.int64))
        self.records = self.records.map_batches(_without_keys, fn_kwargs={"keys": dropped}, batch_format="pyarrow",
                                                **RETRIES)
        groups = [json.loads(r["summary"]) for r in found if r["summary"] is not None]
        return groups, (self._near() if self.recipe.dedup.near is not None else None)

    def _near(self) -> tuple[dict, dict[str, int]]:
        """Each record's band keys, a shuffle by band key (no driver holds the
        signatures), signature comparison inside each band (``dedup.similar_pairs``);
        the pairs found come to the driver, which clusters them (``dedup.cluster_drops``)
        as the local engine does, and the dropped records leave training."""
        near = self.recipe.dedup.near
        banded = self.records.map_batches(_band_rows, fn_kwargs={"spec": near}, batch_format="pyarrow", **RETRIES)
        found = banded.groupby("band", num_partitions=self.partitions).map_groups(
            _near_band, fn_kwargs={"spec": near}, batch_format="pyarrow", **RETRIES).take_all()
        nodes, texts, edges = {}, {}, []
        for row in found:
            if row["other"] >= 0:
                edges.append((row["key"], row["other"]))
            else:
                nodes[row["key"]] = (row["uid"], row["held"], row["source"])
                texts[row["key"]] = row["text"]
        dropped = cluster_drops(nodes, edges)
        if dropped:
            keys = np.sort(np.asarray(list(dropped), np.int64))
            self.records = self.records.map_batches(_without_keys, fn_kwargs={"keys": keys}, batch_format="pyarrow",
                                                    **RETRIES)
        return near_stats(nodes, dropped, texts, [s.name for s in self.recipe.sources])

    @_driver_errors
    def decontaminate(self, index, drop: bool) -> tuple[dict[int, int], dict[str, int]]:
        """Check every training record against the index, put in the object store once
        and read by each worker once (``_index_of``); the matched records come back to
        the driver (few, on a corpus worth training on) and leave training with ``drop``."""
        import ray

        reference = [ray.put(index)]  # in a list: passed on as a reference, read in the task
        matched = self.records.map_batches(_contamination_rows, fn_kwargs={"reference": reference},
                                           batch_format="pyarrow", **RETRIES).take_all()
        names = [s.name for s in self.recipe.sources]
        found: dict[int, int] = {}
        per_source = {name: 0 for name in names}
        for row in matched:
            for doc in json.loads(row["docs"]):
                found[doc] = found.get(doc, 0) + 1
            per_source[names[row["source"]]] += 1
        if drop and matched:
            keys = np.sort(np.asarray([row["key"] for row in matched], np.int64))
            self.records = self.records.map_batches(_without_keys, fn_kwargs={"keys": keys}, batch_format="pyarrow",
                                                    **RETRIES)
        return found, per_source

    @_driver_errors
    def select(self, log):
        """Score on the actor pool, choose on the driver (``_select``), drop the rest."""
        recipe = self.recipe
        selection, kept = _select(recipe, self.records, self.actors, log)
        codes = [i for i, s in enumerate(recipe.sources) if s.name in recipe.select.sources]
        self.records = self.records.map_batches(_apply_selection, fn_kwargs={"kept": kept, "codes": codes},
                                                batch_format="pyarrow", **RETRIES)
        return selection

    @_driver_errors
    def tokenize(self) -> RecordCounts:
        """Tokenized while reading: count what goes to training, per source."""
        n = len(self.recipe.sources)
        totals = _totals(self.records.map_batches(_source_counts, fn_kwargs={"n": n}, batch_format="pyarrow")
                         .take_all(), n)
        return RecordCounts(reports=self.reports, records=totals["records"], tokens=totals["tokens"])

    @_driver_errors
    def mix(self, mixer, options: dict, separator: np.ndarray) -> SampleList:
        """The mixer on each hash partition of the keys (every key group whole), and
        one sample per general record; the samples' draw metadata gathered on the driver.

        Ray Data skips a function on a block with no rows and passes on a block with no
        columns, which its hash shuffle cannot concatenate: every stage that can empty a
        block filters inside the function that consumes it, on blocks that have rows."""
        recipe = self.recipe
        kinds = [s.kind for s in recipe.sources]
        codes = {kind: [i for i, k in enumerate(kinds) if k == kind] for kind in ("domain", "general")}
        fn_args = {"recipe": recipe, "separator": separator, "eos": self.tokenizer.eos_token_id}
        domain = self.records.map_batches(training_rows, fn_kwargs={"codes": codes["domain"]},
                                          batch_format="pyarrow", **RETRIES)
        domain_samples = domain.groupby("part", num_partitions=self.partitions).map_groups(
            mix_partition, fn_kwargs=fn_args, batch_format="pyarrow", **RETRIES)
        general_rows = self.records.map_batches(general_samples, fn_kwargs={**fn_args, "codes": codes["general"]},
                                                batch_format="pyarrow", **RETRIES)
        self.samples = _without_empty_blocks(domain_samples.union(general_rows).materialize())
        self.meta = _sample_metadata(self.samples)
        mix = MixSummary()
        for stats in self.meta["mix_stats"]:
            mix.add(json.loads(stats))
        if not self.meta["mix_stats"]:  # no domain records: the mixer's counts over nothing
            mix.add(empty_mix_counts(recipe))
        meta = self.meta
        return SampleList(uid=meta["uid"], kind=meta["kind"], language=meta["language"], tokens=meta["tokens"],
                          mix=mix)

    @_driver_errors
    def order(self, chosen, scorer, separator_text: str) -> Ordering:
        """Seeded hashes place each copy when the shards are packed; a curriculum is
        scored on the actor pool and its order fixed here (``_curriculum``)."""
        self.chosen_uids, self.chosen_counts = np.unique(self.meta["uid"][chosen.samples], return_counts=True)
        self.placement = None
        if scorer is None:
            return Ordering()
        self.placement, stats, cache = _curriculum(self.recipe, self.samples, self.chosen_uids, self.chosen_counts,
                                                   scorer, self.actors, separator_text)
        return Ordering(curriculum=stats, cache=cache)

    @_driver_errors
    def pack(self, dataset_dir: Path, pad_id: int) -> dict:
        """Every drawn copy with its shard and key; each shard sorted and packed by one task."""
        recipe = self.recipe
        dataset_dir.mkdir(parents=True, exist_ok=True)
        copies = self.samples.map_batches(copies_batch, fn_kwargs={
            "chosen_uids": self.chosen_uids, "chosen_counts": self.chosen_counts, "seed": recipe.seed,
            "shards": recipe.shards, "placement": self.placement}, batch_format="pyarrow", **RETRIES)
        written = copies.groupby("shard", num_partitions=recipe.shards).map_groups(pack_shard, fn_kwargs={
            "out_dir": str(dataset_dir), "seq_len": recipe.seq_len, "pad_id": pad_id, "shards": recipe.shards},
            batch_format="pyarrow", **RETRIES).take_all()
        results = {row["shard"]: json.loads(row["result"]) for row in written}
        for index in range(recipe.shards):  # a shard no copy hashed to is an empty file
            if index not in results:
                results[index] = pack.write_shard(iter(()), recipe.seq_len, pad_id,
                                                  dataset_dir / pack.shard_file(index, recipe.shards))
        return pack.finish_dataset(dataset_dir, [results[i] for i in range(recipe.shards)], recipe.seq_len)

    def tokens_used(self, chosen) -> np.ndarray:
        """Per source, the drawn samples' tokens with repeats (from each sample's per-source counts)."""
        uses = np.bincount(chosen.samples, minlength=len(self.meta["uid"]))
        if not len(uses):
            return np.zeros(len(self.recipe.sources), np.int64)
        return (self.meta["source_tokens"] * uses[:, None]).sum(axis=0)

    def describe(self) -> dict:
        """The engine's name and how it cut the work (printed, not written)."""
        return {"name": "ray", "read_pieces": len(self.pieces), "mix_partitions": self.partitions}


# ----------------------------------------------------------------------------- scorers as actors


def _actor_pool(size: int | None) -> dict:
    """``map_batches`` arguments for the scorer actors: up to ``size`` of them (default
    one per GPU, else one), each on a GPU when the cluster has them. The pool needs one
    actor to start and grows to ``size``: a cluster with room for fewer still works."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    size = size or max(1, gpus)
    return {"concurrency": (1, size) if size > 1 else 1, "num_gpus": 1 if gpus else 0}


def _stalled(exc: BaseException) -> bool:
    """Whether Ray gave up waiting for an actor pool to start (``wait_for_min_actors_s``)."""
    import ray.exceptions

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ray.exceptions.GetTimeoutError):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return False


class SelectionScorer:
    """A Ray actor: the recipe's selection scorers, built once, scoring the records of
    the selected sources through the shared on-disk score cache."""

    def __init__(self, recipe: DataRecipe):
        self.recipe = recipe
        self.scoring = SelectionScoring(recipe, recipe.select)
        self.codes = [i for i, s in enumerate(recipe.sources) if s.name in recipe.select.sources]
        self.field = (recipe.select.balance or {}).get("field")

    @_input_errors
    def __call__(self, batch):
        _maybe_fail("score")
        rows = batch.filter(training_mask(batch, self.codes))
        texts = rows.column("text").to_pylist()
        fields = rows.column("topic_field").to_pylist()
        records = [{self.field: value} for value in fields] if self.field else [{} for _ in texts]
        before = (self.scoring.cache.computed, self.scoring.cache.reused)
        methods_before = {n: Counter(getattr(s, "methods", {})) for n, s in self.scoring.scorers.items()}
        scores, topics = self.scoring.score(texts, records) if texts else ({n: np.zeros(0) for n in
                                                                             self.scoring.scorers}, [])
        # What each scorer reports having used (pos_entropy's methods), for stats.json.
        methods = {n: dict(Counter(getattr(s, "methods", {})) - methods_before[n])
                   for n, s in self.scoring.scorers.items() if hasattr(s, "methods")}
        out = {"source": rows.column("source"), "piece": rows.column("piece"), "row": rows.column("row"),
               "topic": pa.array(topics if self.scoring.balance is not None else [None] * len(texts), pa.string())}
        for name, values in scores.items():
            out[f"score:{name}"] = pa.array(np.asarray(values, np.float64))
        counted = np.zeros(len(texts), np.int64)
        used = [None] * len(texts)
        if len(texts):
            counted[0] = self.scoring.cache.computed - before[0]
            used[0] = json.dumps(methods)
        out["computed"] = pa.array(counted)
        out["methods"] = pa.array(used, pa.string())
        return pa.table(out)


def _select(recipe: DataRecipe, records, actors: dict, log):
    """Score the selected sources on the actor pool, then choose on the driver from the
    scores in reading order (sorted by piece and row): the local engine's choice, with
    the same seeded draws. Returns the selection report and the kept (piece, row) keys."""
    scored = records.map_batches(SelectionScorer, fn_constructor_kwargs={"recipe": recipe}, batch_format="pyarrow",
                                 **actors)
    tables = list(scored.iter_batches(batch_format="pyarrow", batch_size=None))

    table = pa.concat_tables([t for t in tables if t.num_rows]) if any(t.num_rows for t in tables) else None
    spec = recipe.select
    # The driver's scoring object only names scorers and directions: nothing is scored here.
    scoring = SelectionScoring(recipe, spec)
    seed = recipe.seed if spec.seed is None else spec.seed
    kept_keys, kept, per_source = [], {}, {}
    computed = int(np.sum(table.column("computed").to_numpy())) if table is not None else 0
    for used in (table.column("methods").to_pylist() if table is not None else []):
        for name, counts in json.loads(used or "{}").items():
            scoring.scorers[name].methods.update(counts)
    total = 0
    for index, source in enumerate(recipe.sources):
        if source.name not in spec.sources:
            continue
        if table is not None:
            mine = table.filter(pc.equal(table.column("source"), index))
        else:
            mine = None
        n = mine.num_rows if mine is not None else 0
        pieces = mine.column("piece").to_numpy() if n else np.zeros(0, np.int64)
        rows = mine.column("row").to_numpy() if n else np.zeros(0, np.int64)
        order = np.lexsort((rows, pieces))
        merged = {name: (mine.column(f"score:{name}").to_numpy()[order] if n else np.zeros(0))
                  for name in scoring.scorers}
        topics = [mine.column("topic").to_pylist()[i] for i in order] if n and scoring.balance is not None else []
        mask, per_source[source.name] = choose_records(spec, scoring, seed, n, merged, topics)
        kept[source.name] = mask
        kept_keys.append(pieces[order][mask].astype(np.int64) * (1 << 32) + rows[order][mask])
        total += n
    report = selection_report(spec, scoring, kept, per_source, computed, total - computed, log)
    keys = np.sort(np.concatenate(kept_keys)) if kept_keys else np.zeros(0, np.int64)
    return report, keys


def _dedup_rows(batch):
    """The columns deduplication needs, of the rows that are records (not reports)."""
    keep = pc.not_equal(batch.column("norm"), pa.scalar(0, pa.uint64()))
    return batch.filter(keep).select(["norm", "uid", "piece", "row", "source", "held", "text"])


@_input_errors
def _dedup_group(batch):
    """One group of equal normalised text: the keys (piece << 32 | row) of the records to
    drop, and the group's summary when it lost any."""
    norm, uid = batch.column("norm").to_numpy(), batch.column("uid").to_numpy()
    piece = batch.column("piece").to_numpy().astype(np.int64)
    row = batch.column("row").to_numpy().astype(np.int64)
    held = pc.is_valid(batch.column("held")).to_numpy(zero_copy_only=False)
    order = ((piece << 32) | row).astype(np.uint64)
    drop = choose(norm, uid, order, held)
    keys = ((piece << 32) | row)[drop].tolist()
    summaries = group_summaries(norm, uid, order, held, batch.column("source").to_numpy(),
                                batch.column("text").to_pylist(), drop)
    return pa.table({"key": pa.array(keys + [-1] * len(summaries), pa.int64()),
                     "summary": pa.array([None] * len(keys) + [json.dumps(s, ensure_ascii=False) for s in summaries],
                                         pa.string())})


_INDEXES: dict[str, object] = {}


def _index_of(reference):
    """The contamination index behind an object reference, fetched once per worker."""
    import ray

    key = reference.hex()
    if key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[key] = ray.get(reference)
    return _INDEXES[key]


@_input_errors
def _contamination_rows(batch, reference: list):
    """The training records of the block that hold an indexed task document: their key
    (piece << 32 | row), source and the documents found."""
    index = _index_of(reference[0])
    rows = batch.filter(training_mask(batch))
    keys, sources, docs = [], [], []
    pieces, numbers = rows.column("piece").to_pylist(), rows.column("row").to_pylist()
    for i, (text, source) in enumerate(zip(rows.column("text").to_pylist(), rows.column("source").to_pylist())):
        matched = index.matches(text) if text is not None else {}
        if matched:
            keys.append((pieces[i] << 32) | numbers[i])
            sources.append(source)
            docs.append(json.dumps(sorted(matched)))
    return pa.table({"key": pa.array(keys, pa.int64()), "source": pa.array(sources, pa.int16()),
                     "docs": pa.array(docs, pa.string())})


@_input_errors
def _band_rows(batch, spec):
    """One row per band of every record (training or held out) left by exact
    deduplication: the band key, the record's key, uid, source, whether held out and
    its text (the pairs of a band are compared on their texts)."""
    batch = batch.filter(pc.not_equal(batch.column("norm"), pa.scalar(0, pa.uint64())))
    out = {"band": [], "key": [], "uid": [], "source": [], "held": [], "text": []}
    columns = [batch.column(c).to_pylist() for c in ("piece", "row", "uid", "source", "held", "text")]
    for piece, row, uid, source, held, text in zip(*columns):
        if held is not None:
            text = json.loads(held)[1]["text"]
        sig = signature(text, spec)
        for band in band_keys(sig, spec):
            out["band"].append(band)
            out["key"].append((piece << 32) | row)
            out["uid"].append(uid)
            out["source"].append(source)
            out["held"].append(held is not None)
            out["text"].append(text)
    return pa.table({"band": pa.array(out["band"], pa.uint64()), "key": pa.array(out["key"], pa.int64()),
                     "uid": pa.array(out["uid"], pa.uint64()), "source": pa.array(out["source"], pa.int16()),
                     "held": pa.array(out["held"], pa.bool_()), "text": pa.array(out["text"], pa.string())})


@_input_errors
def _near_band(batch, spec):
    """The similar pairs of one band's records (rows with ``other`` >= 0), and the
    records they join (``other`` -1, with the start of their text)."""
    empty = pa.table({"key": pa.array([], pa.int64()), "other": pa.array([], pa.int64()),
                      "uid": pa.array([], pa.uint64()), "source": pa.array([], pa.int16()),
                      "held": pa.array([], pa.bool_()), "text": pa.array([], pa.string())})
    if batch.num_rows < 2:
        return empty
    order = np.argsort(batch.column("key").to_numpy(), kind="stable")
    batch = batch.take(pa.array(order))
    keys, texts = batch.column("key").to_pylist(), batch.column("text").to_pylist()
    pairs = similar_pairs(texts, spec)
    if not pairs:
        return empty
    joined = sorted({i for pair in pairs for i in pair})
    uids, sources = batch.column("uid").to_pylist(), batch.column("source").to_pylist()
    held = batch.column("held").to_pylist()
    rows = [(keys[i], keys[j], 0, 0, False, None) for i, j in pairs]
    rows += [(keys[i], -1, uids[i], sources[i], held[i], texts[i][:EXAMPLE_CHARS]) for i in joined]
    return pa.table({"key": pa.array([r[0] for r in rows], pa.int64()), "other": pa.array([r[1] for r in rows], pa.int64()),
                     "uid": pa.array([r[2] for r in rows], pa.uint64()), "source": pa.array([r[3] for r in rows], pa.int16()),
                     "held": pa.array([r[4] for r in rows], pa.bool_()), "text": pa.array([r[5] for r in rows], pa.string())})


def _in_keys(batch, keys: np.ndarray) -> np.ndarray:
    """Which rows of the block have their (piece << 32 | row) in the sorted ``keys``."""
    found = np.zeros(batch.num_rows, bool)
    if len(keys) and batch.num_rows:
        own = batch.column("piece").to_numpy().astype(np.int64) * (1 << 32) + batch.column("row").to_numpy()
        at = np.minimum(np.searchsorted(keys, own), len(keys) - 1)
        found = keys[at] == own
    return found


def _without_keys(batch, keys: np.ndarray):
    """The block without the training records whose (piece << 32 | row) is in ``keys``."""
    found = _in_keys(batch, keys) & training_mask(batch).to_numpy(zero_copy_only=False)
    return batch.filter(pa.array(~found))


def _apply_selection(batch, kept: np.ndarray, codes: list[int]):
    """Drop the selected sources' records that selection did not keep."""
    drop = training_mask(batch, codes).to_numpy(zero_copy_only=False) & ~_in_keys(batch, kept)
    return batch.filter(pa.array(~drop)).drop_columns(["text"])


class CurriculumScorer:
    """A Ray actor: the curriculum's scorer, built once, scoring drawn samples (decoded
    record by record and joined with the separator, as the local engine does) through
    the shared on-disk score cache."""

    def __init__(self, recipe: DataRecipe, separator_text: str):
        spec = recipe.curriculum
        self.scorer = build_scorer(spec.by, dict(spec.options), where="curriculum")
        self.cache = ScoreCache(Path(spec.cache_dir or recipe.output.parent / ".selection-cache"))
        self.tokenizer = _tokenizer(recipe.tokenizer)
        self.separator_text = separator_text
        self.separator_tokens = len(separator_ids(self.tokenizer, separator_text))

    @_input_errors
    def __call__(self, batch, chosen_uids: np.ndarray):
        _maybe_fail("curriculum")
        uids = batch.column("uid").to_numpy()
        wanted = np.isin(uids, chosen_uids) & (batch.column("kind").to_numpy() >= 0)
        rows = np.flatnonzero(wanted)
        ids = batch.column("ids")
        lengths = batch.column("record_tokens")
        texts = []
        for row in rows.tolist():
            sample = ids[row].values.to_numpy(zero_copy_only=False)
            pieces, at = [], 0
            for n in lengths[row].values.to_numpy(zero_copy_only=False).tolist():
                if pieces:
                    at += self.separator_tokens
                pieces.append(sample[at:at + n].tolist())
                at += n
            texts.append(self.separator_text.join(self.tokenizer.batch_decode(pieces, skip_special_tokens=True)))
        before = self.cache.computed
        scores = self.cache.get_or_score(texts, self.scorer) if texts else np.zeros(0)
        computed = np.zeros(len(rows), np.int64)
        if len(rows):
            computed[0] = self.cache.computed - before
        return pa.table({"uid": pa.array(uids[rows], pa.uint64()), "score": pa.array(np.asarray(scores, np.float64)),
                         "computed": pa.array(computed)})


def _curriculum(recipe: DataRecipe, samples, chosen_uids, chosen_counts, scorer, actors: dict, separator_text: str):
    """Score the drawn samples on the actor pool and order them on the driver: the
    local engine's order (from the canonical (uid, copy) listing), cut into shards as
    consecutive stretches. Returns each copy's (shard, key) listed by (uid, copy), the
    curriculum stats and the cache counts."""
    spec = recipe.curriculum
    scored = samples.map_batches(CurriculumScorer, fn_constructor_kwargs={"recipe": recipe,
                                                                          "separator_text": separator_text},
                                 fn_kwargs={"chosen_uids": chosen_uids}, batch_format="pyarrow", **actors)
    uid_parts, score_parts, computed = [], [], 0
    for table in scored.iter_batches(batch_format="pyarrow", batch_size=None):
        uid_parts.append(table.column("uid").to_numpy())
        score_parts.append(table.column("score").to_numpy())
        computed += int(np.sum(table.column("computed").to_numpy()))
    uids = np.concatenate(uid_parts) if uid_parts else np.zeros(0, np.uint64)
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
    first = np.unique(uids, return_index=True)[1]  # equal content, equal score: one each
    score_of = dict(zip(uids[first].tolist(), scores[first].tolist()))
    entries = np.repeat(chosen_uids, chosen_counts)  # (uid, copy) order: the canonical listing
    entry_scores = np.asarray([score_of[u] for u in entries.tolist()], np.float64)
    ordered, stats = curriculum_order(spec, entry_scores, recipe.seed + 1, scorer.config)
    shard = np.zeros(len(entries), np.int64)
    key = np.zeros(len(entries), np.uint64)
    for index, part in enumerate(np.array_split(ordered, recipe.shards)):
        shard[part] = index
        key[part] = np.arange(len(part), dtype=np.uint64)
    cache = {"computed": computed, "reused": int(len(first) - computed),
             "dir": str(Path(spec.cache_dir or recipe.output.parent / ".selection-cache"))}
    return (shard, key), stats, cache


def _side_rows(batch, limit: int):
    """Per block: its report rows, its ``limit`` lowest held-out draws per source, and
    its held-out count per source."""
    report_rows = [i for i, r in enumerate(batch.column("report").to_pylist()) if r is not None]
    held = batch.column("held").to_pylist()
    sources = batch.column("source").to_pylist()
    by_source: dict[int, list] = {}
    for i, h in enumerate(held):
        if h is not None:
            order, doc = json.loads(h)
            by_source.setdefault(sources[i], []).append((order, doc["text"], i))
    kept = [i for items in by_source.values() for _, _, i in sorted(items)[:limit]]
    rows = {"piece": [], "source": [], "report": [], "held": [], "held_count": []}
    pieces = batch.column("piece").to_pylist()
    reports = batch.column("report").to_pylist()
    for i in report_rows:
        rows["piece"].append(pieces[i]); rows["source"].append(sources[i]); rows["report"].append(reports[i])
        rows["held"].append(None); rows["held_count"].append(0)
    for i in kept:
        rows["piece"].append(pieces[i]); rows["source"].append(sources[i]); rows["report"].append(None)
        rows["held"].append(held[i]); rows["held_count"].append(0)
    for source, items in by_source.items():
        rows["piece"].append(-1); rows["source"].append(source); rows["report"].append(None)
        rows["held"].append(None); rows["held_count"].append(len(items))
    return pa.table({"piece": pa.array(rows["piece"], pa.int32()), "source": pa.array(rows["source"], pa.int16()),
                     "report": pa.array(rows["report"], pa.string()), "held": pa.array(rows["held"], pa.string()),
                     "held_count": pa.array(rows["held_count"], pa.int64())})


def training_mask(batch, codes: list[int] | None = None):
    """Which rows of a record block go to training (neither report rows nor held out),
    among the sources ``codes`` (default: all)."""
    keep = pc.and_(pc.is_null(batch.column("report")), pc.is_null(batch.column("held")))
    if codes is not None:
        keep = pc.and_(keep, pc.is_in(batch.column("source"), value_set=pa.array(codes, pa.int16())))
    return keep


def training_rows(batch, codes: list[int] | None = None):
    """The records of the block that go to training (``training_mask``), without the
    columns only reading and selection need."""
    batch = batch.filter(training_mask(batch, codes))
    return batch.drop_columns([c for c in ("report", "held", "piece", "row", "text", "topic_field")
                               if c in batch.column_names])


def _without_empty_blocks(dataset):
    """The materialized ``dataset`` without its empty blocks (see the note in ``_build``)."""
    import ray
    import ray.data

    refs = dataset.to_arrow_refs()
    rows = ray.get([_num_rows.remote(ref) for ref in refs])
    kept = [ref for ref, n in zip(refs, rows) if n]
    return ray.data.from_arrow_refs(kept) if kept else dataset


def _num_rows_fn(table) -> int:
    return table.num_rows


class _LazyRemote:
    """``ray.remote`` applied on first use (ray is imported only by this engine)."""

    def __init__(self, fn):
        self.fn, self.remote_fn = fn, None

    def remote(self, *args):
        if self.remote_fn is None:
            import ray

            self.remote_fn = ray.remote(self.fn)
        return self.remote_fn.remote(*args)


_num_rows = _LazyRemote(_num_rows_fn)


def _source_counts(batch, n: int):
    """Per block: good records and their tokens per source."""
    batch = training_rows(batch)
    source = batch.column("source").to_numpy()
    lengths = pc.list_value_length(batch.column("ids")).to_numpy(zero_copy_only=False)
    return pa.table({"records": [np.bincount(source, minlength=n).tolist()],
                     "tokens": [np.bincount(source, weights=lengths, minlength=n).astype(np.int64).tolist()]})


def _totals(rows: list[dict], n: int) -> dict[str, np.ndarray]:
    records, tokens = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for row in rows:
        records += np.asarray(row["records"], np.int64)
        tokens += np.asarray(row["tokens"], np.int64)
    return {"records": records, "tokens": tokens}


def _sample_metadata(samples) -> dict:
    """What the ratio draw needs of every sample, gathered on the driver."""
    parts = {"uid": [], "kind": [], "language": [], "tokens": [], "source_tokens": []}
    mix_stats = []
    for batch in samples.select_columns(["uid", "kind", "language", "tokens", "source_tokens", "mix_stats"]) \
            .iter_batches(batch_format="pyarrow", batch_size=65536):
        stats = batch.column("mix_stats").to_pylist()
        real = np.asarray([s is None for s in stats], bool)
        mix_stats += [s for s in stats if s is not None]
        for name in ("uid", "kind", "language", "tokens"):
            parts[name].append(batch.column(name).to_numpy()[real])
        # Sample rows hold one count per source, mixer-stats rows none: flatten and fold.
        flat = batch.column("source_tokens").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        parts["source_tokens"].append(flat.reshape(int(real.sum()), -1) if real.any() else None)
    out = {name: (np.concatenate(parts[name]) if parts[name] else np.zeros(0)) for name in ("uid", "kind", "language", "tokens")}
    out["uid"] = out["uid"].astype(np.uint64)
    out["kind"] = out["kind"].astype(np.int8)
    out["language"] = out["language"].astype(np.int16)
    out["tokens"] = out["tokens"].astype(np.int64)
    folded = [p for p in parts["source_tokens"] if p is not None]
    out["source_tokens"] = np.concatenate(folded).astype(np.int64) if folded else np.zeros((0, 0), np.int64)
    out["mix_stats"] = mix_stats
    return out
