"""``ecomharness data build RECIPE --engine ray``: the same recipe, run as Ray Data stages.

    read + render + validate + held-out split  (one read task per piece of a source:
                                                a JSON Lines byte range, a Parquet
                                                row-group run, a CSV file)
    -> tokenize                                 (map_batches; a tokenizer per worker)
    -> mix                                      (groupby(hash partition of the key)
                                                .map_groups: the recipe's mixer on each
                                                partition, so every key group is whole)
    -> ratio draw                               (on the driver, over 4 numbers a sample)
    -> copy, shard and pack                     (groupby(shard).map_groups: each shard
                                                sorted and packed by one task)

Every choice comes from seeded hashes of record content (data/identity.py), so the
output is the local engine's, byte for byte, for any number of blocks or workers: the
same shards, ``state.json`` and ``stats.json`` (which adds the engine's name only under
``timings`` printed to the console). A stage whose worker dies is retried by Ray; each
stage is a pure function of its input block and the shard files are rewritten whole, so
a retry cannot duplicate samples.

The output folder must be one every worker can write (one machine, or a shared file
system on a cluster). What stays on the driver: the recipe, the per-piece bad-record
reports, the held-out documents (the ``max_documents`` lowest draws per folder, merged
from each block's own) and the ratio draw over (uid, kind, language, tokens) per sample.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecomharness.data import layout, pack, ratio
from ecomharness.data.identity import record_uid, sample_uids
from ecomharness.data.recipe import DataRecipe
from ecomharness.errors import UserError

# A worker that dies (killed, out of memory) has its task run again this many times.
TASK_RETRIES = 3
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
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise InputError(str(exc)) from None

    return wrapped


@dataclass(frozen=True)
class Piece:
    """One read task's share of a source: ``kind`` is ``jsonl`` (a byte range of one
    file), ``parquet`` (a run of row groups), ``file`` (one whole file, read by the
    format's reader) or ``source`` (the whole source, read by its registered reader)."""

    source: int
    kind: str
    path: str
    start: int = 0
    end: int | None = None
    first_row: int = 0
    size: int = 0


def plan_pieces(recipe: DataRecipe, blocks: int | None) -> list[Piece]:
    """Cut every source into read pieces, in reading order. JSON Lines files are cut at
    byte offsets (a line belongs to the piece it begins in), Parquet files at row groups;
    CSV files stay whole (a quoted field may hold a newline), as do sources read by a
    plugin's reader. ``blocks`` is the number of pieces to aim for over all sources."""
    import pyarrow.parquet as pq

    from ecomharness.data.sources import expand_paths

    files = {i: expand_paths(s.path, s.format) for i, s in enumerate(recipe.sources)
             if s.format in ("jsonl", "parquet", "csv")}
    total = sum(f.stat().st_size for paths in files.values() for f in paths)
    target = max(1, -(-total // blocks)) if blocks else DEFAULT_BLOCK_BYTES
    pieces: list[Piece] = []
    for index, source in enumerate(recipe.sources):
        if index not in files:
            pieces.append(Piece(index, "source", source.path))
            continue
        for file in files[index]:
            size = file.stat().st_size
            if source.format == "jsonl":
                cuts = max(1, -(-size // target))
                bounds = [size * i // cuts for i in range(cuts + 1)]
                pieces += [Piece(index, "jsonl", str(file), a, b, size=b - a) for a, b in zip(bounds, bounds[1:])]
            elif source.format == "parquet":
                meta = pq.ParquetFile(file).metadata
                row, group, run, run_bytes, first = 0, 0, [], 0, 0
                for group in range(meta.num_row_groups):
                    if not run:
                        first = row
                    run.append(group)
                    run_bytes += meta.row_group(group).total_byte_size
                    row += meta.row_group(group).num_rows
                    if run_bytes >= target:
                        pieces.append(Piece(index, "parquet", str(file), run[0], run[-1] + 1, first, run_bytes))
                        run, run_bytes = [], 0
                if run or meta.num_row_groups == 0:
                    pieces.append(Piece(index, "parquet", str(file), run[0] if run else 0,
                                        (run[-1] + 1) if run else 0, first, run_bytes))
            else:
                pieces.append(Piece(index, "file", str(file), size=size))
    return pieces


def _piece_records(recipe: DataRecipe, piece: Piece):
    """``(where, record)`` of one piece, with the same locations the local readers give."""
    from ecomharness.formats.common import iter_jsonl
    from ecomharness.registry import data_sources

    source = recipe.sources[piece.source]
    if piece.kind == "jsonl":
        for number, record in iter_jsonl(Path(piece.path), piece.start, piece.end):
            yield f"{piece.path}:{number}", record
    elif piece.kind == "parquet":
        import pyarrow.parquet as pq

        row = piece.first_row
        groups = list(range(piece.start, piece.end or 0))
        if groups:
            for batch in pq.ParquetFile(piece.path).iter_batches(
                    batch_size=int(source.options.get("batch_size", 10_000)), row_groups=groups):
                for record in batch.to_pylist():
                    row += 1
                    yield f"{piece.path}:row {row}", record
    else:
        yield from data_sources.get(source.format)(piece.path, source.options)


RECORD_COLUMNS = ("piece", "row", "source", "language", "key", "uid", "part", "text", "held", "report", "topic_field")


@_input_errors
def read_piece(recipe: DataRecipe, piece_index: int, piece: Piece, partitions: int):
    """Render and validate one piece's records; return them as a pyarrow table.

    Good records that stay in training get ``text``; held-out ones get ``held`` (their
    document and draw as JSON); the piece's bad-record report is one extra row whose
    ``report`` column holds it, so the driver can merge reports in reading order."""
    import pyarrow as pa

    from ecomharness.data.heldout import held_document
    from ecomharness.data.records import SourceReport, _rendered

    _maybe_fail("read")
    source = recipe.sources[piece.source]
    language = sorted({s.language for s in recipe.sources}).index(source.language)
    report = SourceReport()
    columns: dict[str, list] = {name: [] for name in RECORD_COLUMNS}
    select = recipe.select
    topic_field = (select.balance or {}).get("field") if select is not None and source.name in select.sources else None
    for row, (key, text, record) in enumerate(_rendered(source, lambda path, options: _piece_records(recipe, piece),
                                                        recipe.on_error, report)):
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
        columns["part"].append(partition_of(key, uid, partitions))
        columns["text"].append(None if held else text)
        columns["held"].append(held)
        columns["report"].append(None)
    columns["row"].append(-1)
    columns["topic_field"].append(None)
    columns["key"].append(None)
    columns["uid"].append(0)
    columns["part"].append(0)
    columns["text"].append(None)
    columns["held"].append(None)
    columns["report"].append(json.dumps({"bad": dict(report.bad), "examples": report.bad_examples},
                                        ensure_ascii=False))
    n = len(columns["uid"])
    columns["piece"] = [piece_index] * n
    columns["source"] = [piece.source] * n
    columns["language"] = [language] * n
    return pa.table({
        "piece": pa.array(columns["piece"], pa.int32()), "row": pa.array(columns["row"], pa.int64()),
        "source": pa.array(columns["source"], pa.int16()),
        "language": pa.array(columns["language"], pa.int16()), "key": pa.array(columns["key"], pa.string()),
        "uid": pa.array(columns["uid"], pa.uint64()), "part": pa.array(columns["part"], pa.int32()),
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
            return BlockMetadata(num_rows=None, size_bytes=piece.size or None, input_files=[piece.path],
                                 exec_stats=None)
        except TypeError:  # Ray releases before 2.43 keep the schema in the metadata
            return BlockMetadata(num_rows=None, size_bytes=piece.size or None, schema=None,
                                 input_files=[piece.path], exec_stats=None)

    class SourcePieces(Datasource):
        def estimate_inmemory_data_size(self):
            return sum(p.size for p in pieces) or None

        def get_read_tasks(self, parallelism, *args, **kwargs):
            return [ReadTask(lambda i=i, p=p: [read_piece(recipe, i, p, partitions)], metadata(p))
                    for i, p in enumerate(pieces)]

    return SourcePieces()


# ----------------------------------------------------------------------------- stages

_TOKENIZERS: dict[str, object] = {}


def _tokenizer(name: str):
    if name not in _TOKENIZERS:  # once per worker process
        from ecomharness.data.records import load_tokenizer

        _TOKENIZERS[name] = load_tokenizer(name)
    return _TOKENIZERS[name]


@_input_errors
def tokenize_batch(batch, tokenizer_name: str, keep_text: bool = False):
    """Add ``ids`` (list of int32) to the rows that have text; other rows get none. The
    text is dropped unless selection still has to score it (``keep_text``)."""
    import pyarrow as pa

    from ecomharness.data.records import encode_texts

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
    import pyarrow.compute as pc

    from ecomharness.data.records import RecordTable

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
    import pyarrow as pa

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
    from ecomharness.registry import mixers

    _maybe_fail("mix")
    from ecomharness.data.build import mix_counts, mixer_options

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
    import pyarrow as pa

    from ecomharness.data.identity import pack_keys

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
    import pyarrow as pa

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


@dataclass
class MixSummary:
    """The mixer's counts and histograms summed over partitions (what stats.json shows)."""

    counts: Counter = field(default_factory=Counter)
    cluster_sizes: Counter = field(default_factory=Counter)
    coverage: Counter = field(default_factory=Counter)
    samples: int = 0

    def __len__(self) -> int:
        return self.samples

    def add(self, stats: dict) -> None:
        """Add one partition's counts (``update`` keeps counters that are zero)."""
        self.counts.update(stats["counts"])
        self.cluster_sizes.update({int(k): v for k, v in stats["cluster_sizes"].items()})
        self.coverage.update({int(k): v for k, v in stats["coverage"].items()})
        self.samples += stats["samples"]


# How long a cluster's head may take to accept a connection before the build gives up.
CONNECT_TIMEOUT_S = 10.0


def _probe(address: str | None) -> None:
    """``UserError`` at once when nothing listens at a ``host:port`` cluster address:
    ``ray.init`` would otherwise retry for minutes without a word. ``auto``, ``local``
    and ``ray://`` client addresses are left to Ray."""
    import socket

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


def _user_error(exc: BaseException) -> UserError | None:
    """The input error a Ray task raised, under Ray's wrappers, as a ``UserError``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InputError):
            return UserError(exc.args[0] if exc.args else str(exc))
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def build_dataset_ray(recipe: DataRecipe, force: bool = False, address: str | None = None,
                      blocks: int | None = None, scorer_actors: int | None = None, log=print) -> dict:
    """Build the packed dataset of ``recipe`` on Ray Data (see the module docstring);
    return the stats written to stats.json, which equal the local engine's.
    ``scorer_actors``: the pool of selection/curriculum scorer actors (default: one per
    GPU of the cluster, else one)."""
    try:
        return _build(recipe, force, address, blocks, scorer_actors, log)
    except UserError:
        raise
    except Exception as exc:
        found = _user_error(exc)
        if found is not None:
            raise found from None
        raise


def _build(recipe: DataRecipe, force: bool, address: str | None, blocks: int | None, scorer_actors: int | None,
           log) -> dict:
    from ecomharness.data.build import (_check_each_kind_has_records, _write_output, build_stats, log_packed,
                                        mixer_options, pad_token, separator_ids, write_build_files)
    from ecomharness.data.heldout import HeldoutSplit, first_documents, folder_of
    from ecomharness.data.records import SourceReport, load_tokenizer, tokenizer_fingerprint
    from ecomharness.registry import mixers

    out = recipe.output
    if out.exists() and not force:
        raise UserError(f"{out} already exists: pass --force to rebuild it (the old one is kept until the new one is complete)")
    if blocks is not None and blocks < 1:
        raise UserError(f"--blocks: expected a whole number >= 1, got {blocks}")
    mixer = mixers.get(recipe.mixer.name)
    if not getattr(mixer, "runs_per_key_group", False):
        raise UserError(f"mixer {recipe.mixer.name!r} needs every record at once, which the ray engine does not "
                        "give it (its mixers run per hash partition of the keys): use --engine local")
    curriculum_scorer = None
    if recipe.curriculum is not None:  # built here too: a bad proxy model path fails before any reading
        from ecomharness.select.scorers import build_scorer

        curriculum_scorer = build_scorer(recipe.curriculum.by, dict(recipe.curriculum.options), where="curriculum")
    tokenizer = load_tokenizer(recipe.tokenizer)
    separator_text = mixer_options(recipe)[1]
    separator = separator_ids(tokenizer, separator_text)
    eos = tokenizer.eos_token_id
    start_ray(address, log)
    import ray
    import ray.data

    timings: dict[str, float] = {}
    retries = {"max_retries": TASK_RETRIES}
    pieces = plan_pieces(recipe, blocks)
    partitions = max(1, blocks or len(pieces))
    log(f"[data] ray: {len(recipe.sources)} source(s) in {len(pieces)} read piece(s), "
        f"{partitions} mix partition(s), {recipe.shards} output shard(s)")

    start = time.perf_counter()
    # Read tasks are retried by Ray core's default for tasks (3) when their worker dies.
    records = ray.data.read_datasource(_datasource(recipe, pieces, partitions), override_num_blocks=len(pieces))
    records = records.map_batches(tokenize_batch, fn_kwargs={"tokenizer_name": recipe.tokenizer,
                                                             "keep_text": recipe.select is not None},
                                  batch_format="pyarrow", batch_size=recipe.batch_size, **retries).materialize()
    timings["read_tokenize"] = time.perf_counter() - start

    # Reports and held-out documents: small, merged on the driver in reading order.
    side = records.map_batches(_side_rows, fn_kwargs={"limit": recipe.heldout.max_documents if recipe.heldout else 0},
                               batch_format="pyarrow", **retries).take_all()
    reports = {s.name: SourceReport() for s in recipe.sources}
    held_counts = {s.name: 0 for s in recipe.sources}
    candidates: dict[str, list] = {}
    for row in sorted((r for r in side if r["report"] is not None), key=lambda r: r["piece"]):
        source = recipe.sources[row["source"]]
        report = json.loads(row["report"])
        reports[source.name].bad.update(report["bad"])
        for example in report["examples"]:
            if len(reports[source.name].bad_examples) < 5:
                reports[source.name].bad_examples.append(example)
    for row in side:
        if row["held"] is not None:
            source = recipe.sources[row["source"]]
            order, doc = json.loads(row["held"])
            candidates.setdefault(folder_of(source), []).append((order, doc))
        if row["held_count"]:
            held_counts[recipe.sources[row["source"]].name] += row["held_count"]
    heldout_docs = ({folder: first_documents(items, recipe.heldout.max_documents)
                     for folder, items in candidates.items()} if recipe.heldout else None)

    selection = None
    actors = _actor_pool(scorer_actors)
    if recipe.select is not None:
        start = time.perf_counter()
        selection, kept = _select(recipe, records, actors, log)
        timings["select"] = time.perf_counter() - start
        records = records.map_batches(_apply_selection, fn_kwargs={"kept": kept, "codes": [
            i for i, s in enumerate(recipe.sources) if s.name in recipe.select.sources]},
            batch_format="pyarrow", **retries)

    # Ray Data skips a function on a block with no rows and passes on a block with no
    # columns, which its hash shuffle cannot concatenate: every stage that can empty a
    # block filters inside the function that consumes it, on blocks that have rows.
    kinds = [s.kind for s in recipe.sources]
    codes = {kind: [i for i, k in enumerate(kinds) if k == kind] for kind in ("domain", "general")}
    domain = records.map_batches(training_rows, fn_kwargs={"codes": codes["domain"]}, batch_format="pyarrow",
                                 **retries)
    totals = _totals(records.map_batches(_source_counts, fn_kwargs={"n": len(recipe.sources)},
                                         batch_format="pyarrow").take_all(), len(recipe.sources))
    log(f"[data] read, rendered, tokenized {int(totals['records'].sum()):,} records "
        f"({int(totals['tokens'].sum()):,} tokens) in {timings['read_tokenize']:.1f}s")
    if totals["records"].sum() == 0:
        raise UserError("no usable records in any source (see the bad-record counts with on_error: skip)")
    by_kind = {kind: int(totals["records"][[i for i, k in enumerate(kinds) if k == kind]].sum())
               for kind in ("domain", "general")}
    _check_each_kind_has_records(recipe, by_kind, reports)

    start = time.perf_counter()
    fn_args = {"recipe": recipe, "separator": separator, "eos": eos}
    domain_samples = domain.groupby("part", num_partitions=partitions).map_groups(mix_partition, fn_kwargs=fn_args, batch_format="pyarrow",
                                                       **retries)
    general_rows = records.map_batches(general_samples, fn_kwargs={**fn_args, "codes": codes["general"]},
                                       batch_format="pyarrow", **retries)
    samples = _without_empty_blocks(domain_samples.union(general_rows).materialize())
    meta = _sample_metadata(samples)
    mix = MixSummary()
    for stats in meta["mix_stats"]:
        mix.add(json.loads(stats))
    if not meta["mix_stats"]:  # no domain records: the mixer's counts over nothing
        from ecomharness.data.build import empty_mix_counts

        mix.add(empty_mix_counts(recipe))
    timings["mix"] = time.perf_counter() - start
    log(f"[data] mixed {by_kind['domain']:,} domain records into {len(mix):,} samples with "
        f"{recipe.mixer.name!r} in {timings['mix']:.2f}s")

    start = time.perf_counter()
    languages = sorted({s.language for s in recipe.sources})
    chosen = ratio.draw_samples(meta["tokens"], meta["kind"], meta["language"], meta["uid"], languages,
                                recipe.ratio, recipe.seed)
    chosen_uids, chosen_counts = np.unique(meta["uid"][chosen.samples], return_counts=True)
    placement, curriculum_stats, curriculum_cache = None, None, None
    if curriculum_scorer is not None:
        start = time.perf_counter()
        placement, curriculum_stats, curriculum_cache = _curriculum(recipe, samples, chosen_uids, chosen_counts,
                                                                    curriculum_scorer, actors, separator_text, log)
        timings["curriculum"] = time.perf_counter() - start
    uses = np.bincount(chosen.samples, minlength=len(meta["uid"]))
    totals["tokens_used"] = (meta["source_tokens"] * uses[:, None]).sum(axis=0) if len(uses) else totals["tokens"] * 0
    timings["ratio"] = time.perf_counter() - start

    def write(tmp: Path) -> dict:
        start = time.perf_counter()
        dataset_dir = tmp / layout.DATASET
        dataset_dir.mkdir(parents=True, exist_ok=True)
        copies = samples.map_batches(copies_batch, fn_kwargs={
            "chosen_uids": chosen_uids, "chosen_counts": chosen_counts, "seed": recipe.seed,
            "shards": recipe.shards, "placement": placement}, batch_format="pyarrow", **retries)
        written = copies.groupby("shard", num_partitions=recipe.shards).map_groups(pack_shard, fn_kwargs={
            "out_dir": str(dataset_dir), "seq_len": recipe.seq_len, "pad_id": pad_token(tokenizer),
            "shards": recipe.shards}, batch_format="pyarrow", **retries).take_all()
        results = {row["shard"]: json.loads(row["result"]) for row in written}
        for index in range(recipe.shards):  # a shard no copy hashed to is an empty file
            if index not in results:
                results[index] = pack.write_shard(iter(()), recipe.seq_len, pad_token(tokenizer),
                                                  dataset_dir / pack.shard_file(index, recipe.shards))
        packed = pack.finish_dataset(dataset_dir, [results[i] for i in range(recipe.shards)], recipe.seq_len)
        timings["pack"] = time.perf_counter() - start
        log_packed(log, packed, recipe.seq_len, timings["pack"])
        held = (HeldoutSplit(keep={}, documents=heldout_docs, held=held_counts).stats(recipe.heldout)
                if recipe.heldout is not None else None)
        stats = build_stats(recipe, reports, totals, mix,
                            {"domain": len(mix), "general": int(np.sum(meta["kind"] == 1))}, chosen, packed,
                            separator_text, tokenizer_fingerprint(tokenizer),
                            selection=selection.stats if selection is not None else None,
                            curriculum=curriculum_stats, heldout=held)
        write_build_files(tmp, recipe, stats, heldout_docs)
        return stats

    stats = _write_output(out, write, log)
    stats["timings_s"] = timings
    stats["engine"] = {"name": "ray", "read_pieces": len(pieces), "mix_partitions": partitions}
    stats["score_cache"] = {k: v for k, v in (("selection", selection.cache if selection else None),
                                                ("curriculum", curriculum_cache)) if v is not None}
    return stats


# ----------------------------------------------------------------------------- scorers as actors


def _actor_pool(size: int | None) -> dict:
    """``map_batches`` arguments for the scorer actors: ``size`` of them (default one per
    GPU, else one), each on a GPU when the cluster has them."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if size is not None and size < 1:
        raise UserError(f"--scorer-actors: expected a whole number >= 1, got {size}")
    return {"concurrency": size or max(1, gpus), "num_gpus": 1 if gpus else 0}


class SelectionScorer:
    """A Ray actor: the recipe's selection scorers, built once, scoring the records of
    the selected sources through the shared on-disk score cache."""

    def __init__(self, recipe: DataRecipe):
        from ecomharness.select.stage import SelectionScoring

        self.recipe = recipe
        self.scoring = SelectionScoring(recipe, recipe.select)
        self.codes = [i for i, s in enumerate(recipe.sources) if s.name in recipe.select.sources]
        self.field = (recipe.select.balance or {}).get("field")

    @_input_errors
    def __call__(self, batch):
        import pyarrow as pa

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
    from ecomharness.select.stage import SelectionScoring, choose_records, selection_report

    scored = records.map_batches(SelectionScorer, fn_constructor_kwargs={"recipe": recipe}, batch_format="pyarrow",
                                 **actors)
    tables = list(scored.iter_batches(batch_format="pyarrow", batch_size=None))
    import pyarrow as pa

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
            mine = table.filter(pa.compute.equal(table.column("source"), index))
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


def _apply_selection(batch, kept: np.ndarray, codes: list[int]):
    """Drop the selected sources' records that selection did not keep."""
    import pyarrow as pa

    keys = batch.column("piece").to_numpy().astype(np.int64) * (1 << 32) + batch.column("row").to_numpy()
    found = np.zeros(len(keys), bool)
    if len(kept):
        at = np.minimum(np.searchsorted(kept, keys), len(kept) - 1)
        found = kept[at] == keys
    drop = training_mask(batch, codes).to_numpy(zero_copy_only=False) & ~found
    return batch.filter(pa.array(~drop)).drop_columns(["text"])


class CurriculumScorer:
    """A Ray actor: the curriculum's scorer, built once, scoring drawn samples (decoded
    record by record and joined with the separator, as the local engine does) through
    the shared on-disk score cache."""

    def __init__(self, recipe: DataRecipe, separator_text: str):
        from ecomharness.data.build import separator_ids
        from ecomharness.select.cache import ScoreCache
        from ecomharness.select.scorers import build_scorer

        spec = recipe.curriculum
        self.scorer = build_scorer(spec.by, dict(spec.options), where="curriculum")
        self.cache = ScoreCache(Path(spec.cache_dir or recipe.output.parent / ".selection-cache"))
        self.tokenizer = _tokenizer(recipe.tokenizer)
        self.separator_text = separator_text
        self.separator_tokens = len(separator_ids(self.tokenizer, separator_text))

    @_input_errors
    def __call__(self, batch, chosen_uids: np.ndarray):
        import pyarrow as pa

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


def _curriculum(recipe: DataRecipe, samples, chosen_uids, chosen_counts, scorer, actors: dict, separator_text: str,
                log):
    """Score the drawn samples on the actor pool and order them on the driver: the
    local engine's order (from the canonical (uid, copy) listing), cut into shards as
    consecutive stretches. Returns each copy's (shard, key) listed by (uid, copy), the
    curriculum stats and the cache counts."""
    from ecomharness.select.curriculum import curriculum_order

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
    log(f"[data] curriculum: {len(entries):,} samples in {len(stats['stages'])} stage(s) by {spec.by} ({spec.order}); "
        f"scores computed {computed:,}, reused {len(first) - computed:,}")
    cache = {"computed": computed, "reused": int(len(first) - computed),
             "dir": str(Path(spec.cache_dir or recipe.output.parent / ".selection-cache"))}
    return (shard, key), stats, cache


def _side_rows(batch, limit: int):
    """Per block: its report rows, its ``limit`` lowest held-out draws per source, and
    its held-out count per source."""
    import pyarrow as pa

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
    import pyarrow as pa
    import pyarrow.compute as pc

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
    import pyarrow as pa
    import pyarrow.compute as pc

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
