"""Pack samples into fixed-length blocks and write them as an HF dataset on disk.

Samples are laid end to end with EOS after each one and cut into ``seq_len`` blocks;
the last block of each shard is padded (``attention_mask`` 0 on the padding), so no
token is lost. Shards are Arrow stream files written directly in
``Dataset.save_to_disk``'s layout (``data-0000i-of-0000N.arrow``, ``dataset_info.json``,
``state.json``) with a fingerprint derived from the content: the same samples give
byte-identical files, whichever engine packed them, and ``datasets.load_from_disk``
reads them memory-mapped, however large.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ecomharness.data.identity import copy_numbers, pack_keys
from ecomharness.data.layout import STATE
from ecomharness.data.records import RecordTable


def _features():
    import datasets

    return datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "attention_mask": datasets.Sequence(datasets.Value("int8")),
    })


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[0]..starts[0]+lengths[0]-1, starts[1]..`` as one array."""
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    return np.repeat(np.asarray(starts, np.int64) - (ends - lengths), lengths) + np.arange(total, dtype=np.int64)


def sample_ids(table: RecordTable, order: np.ndarray, bounds: np.ndarray, separator: np.ndarray,
               eos: int) -> tuple[np.ndarray, np.ndarray]:
    """The packed tokens of samples (sample ``j`` is the rows ``order[bounds[j]:bounds[j+1]]``):
    each sample's records joined by the separator ids, then EOS. Returns the int32 ids of
    all samples in order and each sample's offsets into them (``len(samples) + 1``).

    The one definition of a sample's layout, for both engines: a single gather from
    [all ids | separator | EOS] over runs (record, separator or EOS), no Python loop."""
    order = np.asarray(order, np.int64)
    lengths = table.n_tokens[order].astype(np.int64)
    last = np.zeros(len(order), bool)
    last[bounds[1:] - 1] = True
    pool = np.concatenate([table.ids, separator.astype(np.int32), np.asarray([eos], np.int32)])
    run_start = np.empty(2 * len(order), np.int64)
    run_length = np.empty(2 * len(order), np.int64)
    run_start[0::2], run_length[0::2] = table.starts[order], lengths
    run_start[1::2] = np.where(last, len(table.ids) + len(separator), len(table.ids))
    run_length[1::2] = np.where(last, 1, len(separator))
    flat = pool[concatenated_ranges(run_start, run_length)]
    per_sample = np.add.reduceat(run_length, 2 * bounds[:-1]) if len(bounds) > 1 else np.zeros(0, np.int64)
    return flat.astype(np.int32), np.r_[0, np.cumsum(per_sample)].astype(np.int64)


def sample_token_stream(table: RecordTable, order: np.ndarray, bounds: np.ndarray,
                        samples: np.ndarray, separator: np.ndarray, eos: int, chunk: int = 4096):
    """Yield int32 arrays of tokens: the selected samples' packed tokens (``sample_ids``),
    ``chunk`` samples per array."""
    for begin in range(0, len(samples), chunk):
        picked = samples[begin : begin + chunk]
        sizes = bounds[picked + 1] - bounds[picked]
        rows = order[concatenated_ranges(bounds[picked], sizes)]
        yield sample_ids(table, rows, np.r_[0, np.cumsum(sizes)], separator, eos)[0]


def shard_orders(uids: np.ndarray, seed: int, shards: int) -> list[np.ndarray]:
    """Where each drawn sample copy is packed: per shard, positions into ``uids`` (one
    entry per copy, repeats allowed) in packing order. Shard and order come from seeded
    hashes of (uid, copy number), so they do not depend on how the copies are listed."""
    copies = copy_numbers(uids)
    shard, key = pack_keys(uids, copies, seed, shards)
    return [idx[within_shard_order(key[idx], uids[idx], copies[idx])]
            for idx in (np.flatnonzero(shard == s) for s in range(shards))]


def within_shard_order(keys: np.ndarray, uids: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """The packing order of one shard's copies: by hash key, ties (a 64-bit collision)
    broken by uid and copy number, so the order is total."""
    return np.lexsort((copies, uids, keys))


def shard_file(index: int, shards: int) -> str:
    """The name of shard ``index`` of ``shards`` (datasets' own ``save_to_disk`` naming)."""
    return f"data-{index:05d}-of-{shards:05d}.arrow"


def write_shard(stream, seq_len: int, pad_id: int, path: Path) -> dict:
    """Cut one shard's token stream into ``seq_len`` blocks and write them as an Arrow
    stream file; the last block is padded. Returns its block and token counts and the
    sha256 of its block ids (the shard's content)."""
    import pyarrow as pa

    schema = _features().arrow_schema
    digest = hashlib.sha256()
    carry = np.zeros(0, np.int32)
    blocks = tokens = 0

    def batch(ids: np.ndarray, mask: np.ndarray) -> pa.RecordBatch:
        rows = len(ids) // seq_len
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * seq_len)
        return pa.RecordBatch.from_arrays(
            [pa.ListArray.from_arrays(offsets, pa.array(ids, pa.int32())),
             pa.ListArray.from_arrays(offsets, pa.array(mask, pa.int8()))],
            schema=schema,
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for piece in stream:
            tokens += len(piece)
            carry = np.concatenate([carry, piece]) if len(carry) else piece
            full = (len(carry) // seq_len) * seq_len
            if full:
                ids = carry[:full]
                writer.write_batch(batch(ids, np.ones(full, np.int8)))
                digest.update(ids.tobytes())
                blocks += full // seq_len
                carry = carry[full:]
        if len(carry):
            pad = seq_len - len(carry)
            ids = np.concatenate([carry, np.full(pad, pad_id, np.int32)])
            mask = np.concatenate([np.ones(len(carry), np.int8), np.zeros(pad, np.int8)])
            writer.write_batch(batch(ids, mask))
            digest.update(ids.tobytes())
            blocks += 1
    return {"file": path.name, "blocks": blocks, "tokens": tokens, "sha256": digest.hexdigest()}


def finish_dataset(out_dir: Path, shards: list[dict], seq_len: int) -> dict:
    """Write ``dataset_info.json`` and ``state.json`` over the written shards (in shard
    order) so ``datasets.load_from_disk`` reads them as one dataset; return the packing
    stats, with ``content_sha256`` over every shard's content in order."""
    features = _features()
    info = {"citation": "", "description": "", "features": features.to_dict(), "homepage": "", "license": ""}
    (out_dir / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    content = hashlib.sha256("".join(shard["sha256"] for shard in shards).encode("ascii")).hexdigest()
    state = {
        "_data_files": [{"filename": shard["file"]} for shard in shards],
        "_fingerprint": content[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (out_dir / STATE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    blocks = sum(shard["blocks"] for shard in shards)
    tokens = sum(shard["tokens"] for shard in shards)
    return {"blocks": blocks, "tokens": tokens, "padding": blocks * seq_len - tokens, "shards": len(shards),
            "content_sha256": content}


def write_blocks(streams: list, seq_len: int, pad_id: int, out_dir: Path) -> dict:
    """Write one shard per token stream and the dataset files over them; return the
    packing stats (blocks, tokens, padding, shards, content_sha256)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_shard(stream, seq_len, pad_id, out_dir / shard_file(i, len(streams)))
               for i, stream in enumerate(streams)]
    return finish_dataset(out_dir, written, seq_len)
