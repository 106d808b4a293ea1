"""Pack samples into fixed-length blocks and write them as an HF dataset on disk.

Samples are laid end to end with EOS after each one and cut into ``seq_len`` blocks;
the last block is padded (``attention_mask`` 0 on the padding), so no token is lost.
The Arrow file is written directly in ``Dataset.save_to_disk``'s layout (a stream file,
``dataset_info.json``, ``state.json``) with a fingerprint derived from the content, so
the same input gives byte-identical output and ``datasets.load_from_disk`` reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ecomharness.data.layout import STATE
from ecomharness.data.records import RecordTable

DATA_FILE = "data-00000-of-00001.arrow"


def _features():
    import datasets

    return datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "attention_mask": datasets.Sequence(datasets.Value("int8")),
    })


def sample_token_stream(table: RecordTable, order: np.ndarray, bounds: np.ndarray,
                        samples: np.ndarray, separator: np.ndarray, eos: int, chunk: int = 4096):
    """Yield int32 arrays of tokens: each selected sample's records joined by the
    separator ids, then EOS; ``chunk`` samples per array."""
    sep = separator.astype(np.int32)
    eos_arr = np.asarray([eos], dtype=np.int32)
    for begin in range(0, len(samples), chunk):
        parts: list[np.ndarray] = []
        for sample in samples[begin : begin + chunk].tolist():
            rows = order[bounds[sample] : bounds[sample + 1]]
            for position, row in enumerate(rows.tolist()):
                if position and len(sep):
                    parts.append(sep)
                parts.append(table.token_ids(row))
            parts.append(eos_arr)
        yield np.concatenate(parts) if parts else np.zeros(0, np.int32)


def write_blocks(stream, seq_len: int, pad_id: int, out_dir: Path) -> dict:
    """Cut the token stream into blocks, write the dataset, return block/token counts."""
    import pyarrow as pa

    features = _features()
    schema = features.arrow_schema
    out_dir.mkdir(parents=True, exist_ok=True)
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

    with pa.OSFile(str(out_dir / DATA_FILE), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
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
    info = {"citation": "", "description": "", "features": features.to_dict(), "homepage": "", "license": ""}
    (out_dir / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    state = {
        "_data_files": [{"filename": DATA_FILE}],
        "_fingerprint": digest.hexdigest()[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (out_dir / STATE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return {"blocks": blocks, "tokens": tokens, "padding": blocks * seq_len - tokens}
