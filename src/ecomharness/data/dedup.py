"""Exact deduplication of training records, within and across sources.

    dedup: {exact: true}

Two records are duplicates when their rendered texts are equal after normalisation
(Unicode NFKC, lower case, every space, punctuation and symbol character removed), so
a product title copied with other spacing, case or punctuation is caught. Of each group
of duplicates one record stays in training: the one with the smallest content uid
(data/identity.py; ties, which are identical records, go to the first in reading
order), so the choice depends on content alone and both engines keep the same one. A
training record whose normalised text equals a held-out record's is dropped too: the
held-out bits-per-byte texts must not be trained on.

Deduplication runs after the held-out split and before selection and mixing, so graph
mixing sees the surviving records of each product, and a mixture ratio is not skewed
by a feed that repeats its titles by the thousand. stats.json counts what was removed
per source and shows the largest groups.
"""

from __future__ import annotations

import hashlib
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
class DedupSpec:
    """What deduplication a build does (only exact for now)."""

    exact: bool = True


def parse_dedup(raw: Any, where: str) -> DedupSpec | None:
    """The recipe's ``dedup`` block, or None without one."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{where}.dedup: expected a mapping such as {{exact: true}}, got {raw!r}")
    unknown = sorted(set(raw) - {"exact"})
    if unknown:
        raise UserError(f"{where}.dedup: unknown key(s) {', '.join(unknown)} (known: exact)")
    exact = raw.get("exact", True)
    if not isinstance(exact, bool):
        raise UserError(f"{where}.dedup.exact: expected true or false, got {exact!r}")
    return DedupSpec(exact=exact) if exact else None


def normalized_hash(text: str) -> int:
    """The 64-bit hash of a text's normalised form (see the module docstring); never 0,
    which marks rows that are not records."""
    folded = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(c for c in folded if unicodedata.category(c)[0] not in "PZSC")
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


def dedup_stats(groups: list[dict], source_names: list[str]) -> tuple[dict, dict[str, dict[str, int]]]:
    """stats.json's ``dedup`` block and the per-source counts, from every group that lost
    records (``group_summaries``, from one engine call or merged from many)."""
    per_source = {name: {"duplicates": 0, "duplicates_of_heldout": 0} for name in source_names}
    for group in groups:
        for index, count in group["dropped"].items():
            per_source[source_names[int(index)]]["duplicates_of_heldout" if group["of_heldout"]
                                                 else "duplicates"] += count
    largest = sorted((g for g in groups if not g["of_heldout"]), key=lambda g: (-g["records"], g["uid"]))
    block = {
        "method": "exact (NFKC, lower case, spaces, punctuation and symbols removed)",
        "groups": sum(1 for g in groups if not g["of_heldout"]),
        "removed": sum(c["duplicates"] for c in per_source.values()),
        "removed_as_heldout": sum(c["duplicates_of_heldout"] for c in per_source.values()),
        "largest": [{"records": g["records"], "text": g["text"]} for g in largest[:LARGEST_SHOWN]],
    }
    return block, per_source
