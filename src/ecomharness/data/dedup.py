"""Deduplication of training records, within and across sources: exact, then near.

    dedup: {exact: true, near: {threshold: 0.8}}

Two records are duplicates when their rendered texts are equal after normalisation
(Unicode NFKC, lower case, every character but letters and digits removed), so
a product title copied with other spacing, case or punctuation is caught. Of each group
of duplicates one record stays in training: the one with the smallest content uid
(data/identity.py; ties, which are identical records, go to the first in reading
order), so the choice depends on content alone and both engines keep the same one. A
training record whose normalised text equals a held-out record's is dropped too: the
held-out bits-per-byte texts must not be trained on.

Near duplicates (``near``) are records whose shingle sets have a Jaccard similarity of
at least ``threshold`` (default 0.8): shingles are ``ngram_chars`` (default 5)
characters of CJK text and ``ngram_words`` (default 3) words of other text
(contamination.units). Candidates come from LSH over rensa MinHash signatures
(``num_perm`` 128), cut into as few bands as give a pair at the threshold a 99% chance
of sharing one (21 bands of 6 rows at 0.8; datasketch's default choice, 9 of 13, finds
such a pair 40% of the time). Two records that share a band are compared by their exact
Jaccard similarity, so no estimate decides; records joined by such pairs form a cluster,
and the cluster keeps its smallest uid (a cluster holding a held-out record keeps
none). Both engines group by the same band keys and decide each pair and cluster
with the same functions here.

Deduplication runs after the held-out split and before selection and mixing, so graph
mixing sees the surviving records of each product, and a mixture ratio is not skewed
by a feed that repeats its titles by the thousand. stats.json counts what was removed
per source and shows the largest groups.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecomharness.errors import UserError

# Groups shown in stats.json, largest first.
LARGEST_SHOWN = 5
# Characters of a group's kept text shown beside it.
EXAMPLE_CHARS = 200


@dataclass(frozen=True)
class NearSpec:
    """Near-duplicate settings (see the module docstring)."""

    threshold: float = 0.8
    num_perm: int = 128
    ngram_words: int = 3
    ngram_chars: int = 5


@dataclass(frozen=True)
class DedupSpec:
    """What deduplication a build does: exact always, near when ``near`` is set."""

    exact: bool = True
    near: NearSpec | None = None


def _whole(raw: dict, key: str, default: int, low: int, high: int, where: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{where}.{key}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def parse_dedup(raw: Any, where: str) -> DedupSpec | None:
    """The recipe's ``dedup`` block, or None without one."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{where}.dedup: expected a mapping such as {{exact: true}}, got {raw!r}")
    unknown = sorted(set(raw) - {"exact", "near"})
    if unknown:
        raise UserError(f"{where}.dedup: unknown key(s) {', '.join(unknown)} (known: exact, near)")
    exact = raw.get("exact", True)
    if not isinstance(exact, bool):
        raise UserError(f"{where}.dedup.exact: expected true or false, got {exact!r}")
    near_raw = raw.get("near")
    near = None
    if near_raw is not None and near_raw is not False:
        at = f"{where}.dedup.near"
        near_raw = {} if near_raw is True else near_raw
        if not isinstance(near_raw, dict):
            raise UserError(f"{at}: expected true or a mapping such as {{threshold: 0.8}}, got {near_raw!r}")
        unknown = sorted(set(near_raw) - {"threshold", "num_perm", "ngram_words", "ngram_chars"})
        if unknown:
            raise UserError(f"{at}: unknown key(s) {', '.join(unknown)} (known: threshold, num_perm, ngram_words, "
                            "ngram_chars)")
        threshold = near_raw.get("threshold", 0.8)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.5 <= threshold < 1:
            raise UserError(f"{at}.threshold: expected a Jaccard similarity from 0.5 up to (not including) 1, "
                            f"got {threshold!r}")
        if not exact:
            raise UserError(f"{at}: near deduplication runs after exact deduplication; set exact: true")
        near = NearSpec(float(threshold), _whole(near_raw, "num_perm", 128, 16, 1024, at),
                        _whole(near_raw, "ngram_words", 3, 1, 20, at), _whole(near_raw, "ngram_chars", 5, 1, 20, at))
    return DedupSpec(exact=exact, near=near) if exact else None


_NOT_WORD = re.compile(r"[\W_]+")  # all but letters and digits: spaces, punctuation, symbols, marks


def normalized_hash(text: str) -> int:
    """The 64-bit hash of a text's normalised form (see the module docstring); never 0,
    which marks rows that are not records."""
    kept = _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())
    value = int.from_bytes(hashlib.blake2b(kept.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return value or 1


def _groups(norm: np.ndarray, uid: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records ranked by (norm, uid, reading order), each one's group number in that
    ranking, and where each group starts."""
    ranked = np.lexsort((order, uid, norm))
    sorted_norm = norm[ranked]
    starts = np.r_[0, np.flatnonzero(sorted_norm[1:] != sorted_norm[:-1]) + 1].astype(np.int64)
    group_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(ranked)]))
    return ranked, group_of, starts


def choose(norm: np.ndarray, uid: np.ndarray, order: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Which records to drop (bool): of each group of equal ``norm``, every training record
    when the group holds a held-out one (``held``), else all but the one with the
    smallest (uid, reading order). The arrays may hold all records or one whole group
    per call: the answer for a record depends on its group alone."""
    drop = np.zeros(len(norm), bool)
    if not len(norm):
        return drop
    ranked, group_of, starts = _groups(norm, uid, order)
    held_sorted = held[ranked]
    held_groups = np.zeros(len(starts), bool)
    np.logical_or.at(held_groups, group_of, held_sorted)
    training = np.flatnonzero(~held_sorted)
    first = np.zeros(len(ranked), bool)
    # Ranked by uid then reading order: a group's first training record is the one kept.
    first[training[np.unique(group_of[training], return_index=True)[1]]] = True
    drop[ranked] = ~held_sorted & (held_groups[group_of] | ~first)
    return drop


def group_summaries(norm: np.ndarray, uid: np.ndarray, order: np.ndarray, held: np.ndarray, source: np.ndarray,
                    texts: list[str], drop: np.ndarray) -> list[dict]:
    """Every group that lost a record: its training records, the dropped ones per source
    index, whether a held-out record caused it, and the kept (or first) record's text."""
    out = []
    ranked, group_of, starts = _groups(norm, uid, order)
    bounds = np.r_[starts, len(ranked)]
    for group in np.unique(group_of[drop[ranked]]):
        members = ranked[bounds[group]:bounds[group + 1]]
        lost = members[drop[members]]
        training = members[~held[members]]
        shown = next((m for m in training if not drop[m]), training[0])
        out.append({"records": int(len(training)), "of_heldout": bool(held[members].any()),
                    "dropped": {int(s): int(c) for s, c in zip(*np.unique(source[lost], return_counts=True))},
                    "uid": int(uid[shown]), "text": texts[shown][:EXAMPLE_CHARS]})
    return out


def dedup_stats(groups: list[dict], source_names: list[str],
                near: tuple[dict, dict[str, int]] | None = None) -> tuple[dict, dict[str, dict[str, int]]]:
    """stats.json's ``dedup`` block and the per-source counts, from every group that lost
    records (``group_summaries``, from one engine call or merged from many) and the near
    duplicates (``near_stats``) when they were looked for."""
    per_source = {name: {"duplicates": 0, "duplicates_of_heldout": 0} for name in source_names}
    for group in groups:
        for index, count in group["dropped"].items():
            per_source[source_names[int(index)]]["duplicates_of_heldout" if group["of_heldout"]
                                                 else "duplicates"] += count
    largest = sorted((g for g in groups if not g["of_heldout"]), key=lambda g: (-g["records"], g["uid"]))
    block = {
        "method": "exact (NFKC, lower case, all but letters and digits removed)",
        "groups": sum(1 for g in groups if not g["of_heldout"]),
        "removed": sum(c["duplicates"] for c in per_source.values()),
        "removed_as_heldout": sum(c["duplicates_of_heldout"] for c in per_source.values()),
        "largest": [{"records": g["records"], "text": g["text"]} for g in largest[:LARGEST_SHOWN]],
    }
    if near is not None:
        block["near"] = near[0]
        for name, count in near[1].items():
            per_source[name]["near_duplicates"] = count
    return block, per_source


# ----------------------------------------------------------------------------- near duplicates

SEED = 1  # MinHash permutations: fixed, so signatures are the same in every process


def shingles(text: str, spec: NearSpec) -> list[str]:
    """A record's shingles: n-grams of characters for CJK text, of words for other text
    (a record shorter than n units is one shingle)."""
    from ecomharness.data.contamination import unit_stream

    stream, mostly_cjk = unit_stream(text)
    n = spec.ngram_chars if mostly_cjk else spec.ngram_words
    if len(stream) <= n:
        return ["\x00".join(stream)]
    return list({"\x00".join(stream[i:i + n]) for i in range(len(stream) - n + 1)})


def signature(text: str, spec: NearSpec) -> np.ndarray:
    """The MinHash signature of a record's shingles (uint32, ``num_perm`` values), by
    rensa's ``RMinHash``: in Rust, about 13 times faster here than datasketch's
    ``update_batch``, which made near dedup most of a cleaned build's time."""
    from rensa import RMinHash

    minhash = RMinHash(num_perm=spec.num_perm, seed=SEED)
    minhash.update(shingles(text, spec))
    return np.asarray(minhash.digest(), np.uint32)


# The chance a pair at the threshold must have of sharing a band.
BAND_RECALL = 0.99


def bands(spec: NearSpec) -> tuple[int, int]:
    """(bands, rows per band): the most rows per band (fewest chance candidates) with
    which a pair of similarity ``threshold`` shares a band with probability at least
    ``BAND_RECALL``: 1 - (1 - t^r)^b."""
    best = (spec.num_perm, 1)
    for rows in range(1, spec.num_perm + 1):
        count = spec.num_perm // rows
        if 1 - (1 - spec.threshold ** rows) ** count >= BAND_RECALL:
            best = (count, rows)
    return best


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def band_key_matrix(signatures: np.ndarray, spec: NearSpec) -> np.ndarray:
    """One 64-bit key per band (columns) of each signature (rows of ``signatures``, uint32);
    the band's number is part of its key, and 0 is never a key. Computed with numpy
    over all rows at once: a key only has to be equal for equal bands (a collision adds
    a candidate pair, which the exact Jaccard check then refuses)."""
    b, r = bands(spec)
    sigs = np.atleast_2d(signatures)[:, :b * r].astype(np.uint64).reshape(-1, b, r)
    with np.errstate(over="ignore"):
        keys = np.broadcast_to(np.arange(1, b + 1, dtype=np.uint64) * _MIX, sigs.shape[:2]).copy()
        for column in range(r):
            keys = _splitmix(keys ^ sigs[:, :, column])
    keys[keys == 0] = 1
    return keys


def band_keys(sig: np.ndarray, spec: NearSpec) -> list[int]:
    """One 64-bit key per band of one signature (``band_key_matrix`` of one row)."""
    return band_key_matrix(sig, spec)[0].tolist()


def similar_pairs(texts: list[str], spec: NearSpec) -> list[tuple[int, int]]:
    """The pairs (i < j) of one band's records whose shingle sets have a Jaccard
    similarity of at least the threshold (exact, not estimated)."""
    return similar_set_pairs([set(shingles(t, spec)) for t in texts], spec.threshold)


def similar_set_pairs(sets: list[set], threshold: float) -> list[tuple[int, int]]:
    """``similar_pairs`` on shingle sets already made (a record shares up to one band per
    band count with others, so an engine makes its set once)."""
    return [(i, j) for i in range(len(sets) - 1) for j in range(i + 1, len(sets))
            if _similar(sets[i], sets[j], threshold)]


def _similar(a: set, b: set, threshold: float) -> bool:
    small, large = sorted((len(a), len(b)))
    if small < threshold * large:  # the Jaccard similarity is at most small / large
        return False
    return len(a & b) >= threshold * len(a | b)


def bucket_edges(buckets, sets: dict, threshold: float) -> list[tuple[int, int]]:
    """Edges enough to join the same clusters as every similar pair inside the buckets
    (records sharing a band key; ``sets``: each record's shingle set): a spanning
    forest, not every pair.

    Templated text fills a band bucket with thousands of records that are all near
    duplicates of each other; comparing every pair of them is quadratic. Here a record
    is compared with the members of each other cluster already in its bucket only
    until one is similar (then the clusters join), and never with its own cluster's.
    Two records end in one cluster exactly when a chain of similar pairs sharing a
    band joins them, as with every pair compared, so ``cluster_drops`` decides the
    same (the Ray engine compares every pair of a band and agrees)."""
    parent: dict[int, int] = {}

    def root(key: int) -> int:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    edges = []
    for bucket in buckets:
        groups: dict[int, list[int]] = {}  # cluster root -> its records in this bucket
        for member in (int(r) for r in bucket):
            mine_root = root(member)
            mine = groups.pop(mine_root, [])
            for other_root in list(groups):
                match = next((x for x in groups[other_root] if _similar(sets[member], sets[x], threshold)), None)
                if match is None:
                    continue
                edges.append((member, match))
                parent[other_root] = mine_root
                mine += groups.pop(other_root)
            mine.append(member)
            groups[mine_root] = mine
    return edges


def cluster_drops(nodes: dict[int, tuple[int, bool, int]], edges: list[tuple[int, int]]) -> dict[int, int]:
    """Clusters of records joined by edges (``nodes``: key -> (uid, held, source));
    returns the dropped training records (key -> the kept record's key, or -1 when a
    held-out record is in the cluster). Each cluster keeps its smallest uid."""
    parent = {key: key for key in nodes}

    def root(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for a, b in sorted(edges):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for key in sorted(nodes):
        members.setdefault(root(key), []).append(key)
    dropped = {}
    for group in members.values():
        if len(group) < 2:
            continue
        training = [k for k in group if not nodes[k][1]]
        if not training:
            continue
        if len(training) < len(group):  # a held-out record is in the cluster: none stays
            dropped.update({k: -1 for k in training})
            continue
        kept = min(training, key=lambda k: nodes[k][0])
        dropped.update({k: kept for k in training if k != kept})
    return dropped


def near_stats(nodes: dict[int, tuple[int, bool, int]], dropped: dict[int, int], texts: dict[int, str],
               source_names: list[str]) -> tuple[dict, dict[str, int]]:
    """stats.json's ``dedup.near`` block and the near duplicates removed per source."""
    per_source = {name: 0 for name in source_names}
    clusters: dict[int, int] = {}
    for key, kept in dropped.items():
        per_source[source_names[nodes[key][2]]] += 1
        if kept >= 0:
            clusters[kept] = clusters.get(kept, 1) + 1
    largest = sorted(clusters.items(), key=lambda item: (-item[1], nodes[item[0]][0]))[:LARGEST_SHOWN]
    from importlib.metadata import version

    return {"removed": len(dropped), "clusters": len(clusters), "rensa": version("rensa"),
            "removed_as_heldout": sum(1 for k in dropped.values() if k < 0),
            "largest": [{"records": n, "text": texts.get(kept, "")[:EXAMPLE_CHARS]} for kept, n in largest]}, per_source
