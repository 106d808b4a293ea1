"""Content identities and seeded hash draws: the choices of a build that depend on what a
record *is*, never on where it sits in a file, a block or a worker.

Every record gets a 64-bit ``uid`` from its source, linking key and rendered text. The
mixer's within-cluster order, the ratio draw and the packing order sort by seeded
hashes of these uids, so any engine that sees the same records, in any order and any
number of pieces, makes the same choices (docs/data.md, "Determinism"). Records with
the same uid have the same content, so the order among them cannot change any byte.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def record_uid(source: str, key: str | None, text: str) -> int:
    """The 64-bit identity of one rendered record (its source, key and text)."""
    payload = f"{source}\0{'' if key is None else key}\0{text}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little")


def salt(seed: int, purpose: str) -> np.uint64:
    """A 64-bit salt for one kind of draw (``purpose``) under the recipe's seed."""
    digest = hashlib.blake2b(f"{seed}\0{purpose}".encode("utf-8"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def mix64(values: np.ndarray, salt_value: np.uint64 | int = 0) -> np.ndarray:
    """splitmix64's finaliser of ``values ^ salt``, element-wise: a seeded hash whose
    outputs are as good as uniform and independent for distinct inputs."""
    with np.errstate(over="ignore"):
        z = np.asarray(values, dtype=np.uint64) ^ np.uint64(salt_value)
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def sample_uids(member_uids: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """One identity per sample from its records' uids in packing order (sample ``i`` is
    ``member_uids[bounds[i]:bounds[i + 1]]``); the position of each record counts."""
    sizes = np.diff(bounds)
    if len(member_uids) == 0:
        return np.zeros(len(sizes), np.uint64)
    position = np.arange(len(member_uids), dtype=np.int64) - np.repeat(bounds[:-1], sizes)
    terms = mix64(np.asarray(member_uids, np.uint64), 0) ^ mix64(position.astype(np.uint64), _GOLDEN)
    with np.errstate(over="ignore"):
        terms = mix64(terms, 0)
        # Sum modulo 2**64 per sample (reduceat wraps like the hash arithmetic).
        return np.add.reduceat(terms, bounds[:-1].astype(np.int64)).astype(np.uint64)


def copy_numbers(uids: np.ndarray) -> np.ndarray:
    """For a list of (possibly repeated) uids, how many equal uids came before each one,
    counted in sorted order: the copies of one sample are numbered 0, 1, 2..."""
    order = np.argsort(uids, kind="stable")
    ranked = uids[order]
    starts = np.r_[0, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1] if len(uids) else np.zeros(0, np.int64)
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(uids)]))
    copies = np.empty(len(uids), np.int64)
    copies[order] = np.arange(len(uids)) - run_start
    return copies


def pack_keys(uids: np.ndarray, copies: np.ndarray, seed: int, shards: int) -> tuple[np.ndarray, np.ndarray]:
    """Each packed copy's output shard and its sort key inside the shard (the seeded
    shuffle that interleaves domain and general samples)."""
    entry = mix64(np.asarray(uids, np.uint64), 0) ^ mix64(np.asarray(copies, np.uint64), _M1)
    shard = (mix64(entry, salt(seed, "shard")) % np.uint64(shards)).astype(np.int64)
    return shard, mix64(entry, salt(seed, "pack"))
