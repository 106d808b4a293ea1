"""The held-out slice of a data build: text set aside for bits-per-byte tasks.

    heldout:
      share: 0.01           # of products (domain sources, by their key) and of general records
      max_documents: 1000   # per held-out folder written (all held records stay out of training)

A domain record is held out by its product id (the source's ``key``), hashed with the
recipe's seed, so a product is held out of every domain source at once and none of its
records reaches training. A general record (or a domain record without a key) is held
out by a hash of its text. Hashes, not positions: the same record is held out whatever
order the files list it in. The held-out text goes to ``OUTPUT/heldout/FOLDER/test.jsonl``
(``domain``, ``general_zh``, ``general_en``...), where the ``heldout_bpb_*`` tasks read
it with ``--metadata '{"heldout_dir": "OUTPUT/heldout"}'``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecomharness.errors import UserError
from ecomharness.util import is_number, reject_unknown_keys


@dataclass(frozen=True)
class HeldoutSpec:
    """The recipe's ``heldout`` block, validated when the recipe loads."""

    share: float
    max_documents: int = 1000


def parse_heldout(raw: Any, where: str) -> HeldoutSpec | None:
    """Validate the ``heldout`` block (None when absent); errors name ``where.heldout.FIELD``."""
    if raw is None:
        return None
    at = f"{where}.heldout"
    if not isinstance(raw, dict):
        raise UserError(f"{at}: expected a mapping such as {{share: 0.01, max_documents: 1000}}")
    reject_unknown_keys(raw, {"share", "max_documents"}, at)
    share = raw.get("share")
    if not is_number(share) or not 0 < share < 1:
        raise UserError(f"{at}.share: expected a number strictly between 0 and 1, got {share!r}")
    cap = raw.get("max_documents", 1000)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise UserError(f"{at}.max_documents: expected a whole number >= 1, got {cap!r}")
    return HeldoutSpec(float(share), cap)


def folder_of(source) -> str:
    """The held-out folder a source's records go to."""
    return "domain" if source.kind == "domain" else f"general_{source.language}"


def _draw(seed: int, group: str, value: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{group}\0{value}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") / 2 ** 64


@dataclass
class HeldoutSplit:
    """Which records stay in training, and the held-out documents per folder."""

    keep: dict[str, np.ndarray]  # source name -> bool over its good records
    documents: dict[str, list[dict]] = field(default_factory=dict)  # folder -> written documents
    held: dict[str, int] = field(default_factory=dict)  # source name -> records held out

    def stats(self, spec: HeldoutSpec) -> dict[str, Any]:
        """What stats.json records about the split."""
        return {"share": spec.share, "max_documents": spec.max_documents,
                "held_records": dict(sorted(self.held.items())),
                "documents_written": {folder: len(docs) for folder, docs in sorted(self.documents.items())}}


def split_heldout(recipe, spec: HeldoutSpec, rendered: Callable[[Any], Iterable[tuple[str, dict]]]) -> HeldoutSplit:
    """Decide, per good record of every source (``rendered(source)`` yields ``(text,
    record)`` in build order), whether it is held out; collect the held-out texts, the
    ``max_documents`` with the lowest draw per folder (a seeded, order-free choice)."""
    keep: dict[str, np.ndarray] = {}
    held: dict[str, int] = {}
    candidates: dict[str, list[tuple[float, dict]]] = {}
    for source in recipe.sources:
        mask = []
        for text, record in rendered(source):
            doc, order = held_document(recipe.seed, spec, source, text, record)
            mask.append(doc is None)
            if doc is not None:
                candidates.setdefault(folder_of(source), []).append((order, doc))
        keep[source.name] = np.asarray(mask, dtype=bool)
        held[source.name] = int(len(mask) - sum(mask))
    documents = {folder: first_documents(items, spec.max_documents) for folder, items in candidates.items()}
    return HeldoutSplit(keep=keep, documents=documents, held=held)


def held_document(seed: int, spec: HeldoutSpec, source, text: str, record: dict) -> tuple[dict | None, float]:
    """Whether one good record is held out: its held-out document (else None) and the
    draw that orders documents under ``max_documents``. Depends on the record alone, so
    every engine decides it the same way wherever the record is read."""
    key = record.get(source.key) if source.kind == "domain" and source.key else None
    group, value = ("product", str(key)) if key not in (None, "") else (folder_of(source), text)
    if _draw(seed, group, value) >= spec.share:
        return None, 0.0
    doc = {"text": text, "source": source.name}
    if key not in (None, ""):
        doc["key"] = str(key)
    # The document's own draw orders the cap (products draw once for all their
    # records, so the text breaks ties).
    return doc, _draw(seed, "order", text)


def first_documents(candidates: list[tuple[float, dict]], limit: int) -> list[dict]:
    """The ``limit`` held-out documents with the lowest draws (text breaks ties): the
    same whether ``candidates`` is one folder's whole list or a merge of partial ones."""
    return [doc for _, doc in sorted(candidates, key=lambda item: (item[0], item[1]["text"]))[:limit]]


def combine_masks(base: dict[str, np.ndarray] | None, within: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """Masks over a source's good records from a mask ``base`` and a mask ``within`` over
    the records ``base`` kept (selection runs on what the held-out split left)."""
    if base is None:
        return within
    if within is None:
        return base
    out = {}
    for name, mask in base.items():
        if name not in within:
            out[name] = mask
            continue
        combined = np.zeros(len(mask), dtype=bool)
        combined[np.flatnonzero(mask)[within[name]]] = True
        out[name] = combined
    return out
