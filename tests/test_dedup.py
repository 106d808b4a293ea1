"""Exact deduplication (data/dedup.py): what counts as equal, which record is kept,
held-out texts kept out of training, and the counts a build reports."""

from __future__ import annotations

import random
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ecomharness.data.build import build_dataset
from ecomharness.data.dedup import choose, normalized_hash, parse_dedup
from ecomharness.data.identity import record_uid
from ecomharness.data.recipe import load_recipe
from ecomharness.errors import UserError
from tests.conftest import corpus_with_tokenizer


def test_normalisation_ignores_case_spacing_punctuation_and_width():
    same = ["Red Summer Dress, size M!", "red summer dress size m", "RED  SUMMER\tDRESS — SIZE M.",
            "ｒｅｄ summer dress size m"]
    assert len({normalized_hash(t) for t in same}) == 1
    assert normalized_hash("红色连衣裙，夏季新款！") == normalized_hash("红色 连衣裙 夏季新款")
    assert normalized_hash("red summer dress size L") != normalized_hash(same[0])
    assert normalized_hash("") != 0 and normalized_hash("!!!") == normalized_hash("")


def test_choose_keeps_the_smallest_uid_and_drops_groups_with_a_held_out_text():
    norm = np.array([7, 7, 7, 3, 3, 5], np.uint64)
    uid = np.array([30, 10, 20, 4, 4, 1], np.uint64)
    order = np.arange(6, dtype=np.uint64)
    held = np.array([False, False, False, False, False, False])
    assert choose(norm, uid, order, held).tolist() == [True, False, True, False, True, False]
    held[0] = True  # a held-out record among the 7s: no training record of that text stays
    assert choose(norm, uid, order, held).tolist() == [False, True, True, False, True, False]
    # One group at a time gives the same answer as all at once (the Ray engine's way).
    parts = np.concatenate([choose(norm[m], uid[m], order[m], held[m]) for m in (norm == 7, norm == 3, norm == 5)])
    assert parts.tolist() == choose(norm, uid, order, held)[np.r_[0, 1, 2, 3, 4, 5]].tolist()


def test_dedup_block_is_validated():
    assert parse_dedup(None, "r") is None and parse_dedup({"exact": False}, "r") is None
    with pytest.raises(UserError, match=r"r\.dedup: unknown key\(s\) fuzzy"):
        parse_dedup({"fuzzy": 0.8}, "r")
    with pytest.raises(UserError, match=r"r\.dedup\.near: expected true or a mapping"):
        parse_dedup({"near": 0.8}, "r")
    with pytest.raises(UserError, match=r"r\.dedup\.exact: expected true or false"):
        parse_dedup({"exact": "yes"}, "r")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup_corpus")
    sources = corpus_with_tokenizer(root, n_products=120, n_general=240, seed=6, vocab_size=500)
    feed = root / "raw" / "feed.jsonl"
    rows = []
    for i in range(30):
        rows.append({"product_id": f"P{i:05d}", "text": f"Feed title number {i} for a summer dress"})
    for i in range(0, 30, 3):  # the same titles again, re-typed by another shop
        rows.append({"product_id": f"P{i:05d}", "text": f"FEED TITLE NUMBER {i}, FOR A SUMMER DRESS!"})
    rows += [{"product_id": "P00001", "text": "Feed title number 1 for a summer dress"}] * 4  # verbatim repeats
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    copy = root / "raw" / "copy.jsonl"  # a second source carrying two of the same titles
    copy.write_text("".join(json.dumps({"product_id": f"P{i:05d}", "text": f"feed title number {i} for a summer dress"})
                            + "\n" for i in (2, 4)), encoding="utf-8")
    extra = [{"name": "feed", "kind": "domain", "language": "en", "format": "jsonl", "path": str(feed),
              "key": "product_id"},
             {"name": "copy", "kind": "domain", "language": "en", "format": "jsonl", "path": str(copy),
              "key": "product_id"}]
    return root, sources + extra


def _recipe(root: Path, sources, name: str, **extra) -> Path:
    recipe = {"output": str(root / name), "tokenizer": str(root / "tok"), "seq_len": 64, "seed": 2,
              "sources": sources, "mixer": {"name": "graph", "min_records": 2, "max_records": 4},
              "ratio": {"general_languages": {"zh": 1, "en": 1}}, **extra}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def test_a_build_removes_duplicates_within_and_across_sources(corpus):
    root, sources = corpus
    plain = build_dataset(load_recipe(_recipe(root, sources, "plain")), log=lambda *_: None)
    lines: list[str] = []
    stats = build_dataset(load_recipe(_recipe(root, sources, "deduped", dedup={"exact": True})), log=lines.append)
    by_name = {s["name"]: s for s in stats["sources"]}
    # 30 titles in the feed, 10 re-typed, 4 verbatim repeats, 2 copies in another source:
    # 16 of them go, 30 distinct titles stay, each once.
    removed = by_name["feed"]["duplicates"] + by_name["copy"]["duplicates"]
    assert removed == 16 and by_name["feed"]["records"] + by_name["copy"]["records"] == 30
    # The synthetic shop repeats its templated reviews, as real feeds do: those go too.
    assert by_name["reviews_zh"]["duplicates"] > 0
    assert stats["dedup"]["removed"] == sum(s["duplicates"] for s in stats["sources"]) > removed
    assert stats["dedup"]["removed_as_heldout"] == 0
    assert stats["records"] == plain["records"] - stats["dedup"]["removed"]
    feed_group = next(g for g in stats["dedup"]["largest"] if g["text"].lower().startswith("feed title number 1 "))
    assert feed_group["records"] == 5  # the title and its four verbatim repeats
    # Which copy stays is decided by content: the smallest uid of its group. Titles 2 and 4
    # are in the feed once and in the copy once.
    copy_kept = sum(1 for i in (2, 4) if record_uid("copy", f"P{i:05d}", f"feed title number {i} for a summer dress")
                    < record_uid("feed", f"P{i:05d}", f"Feed title number {i} for a summer dress"))
    assert by_name["copy"]["records"] == copy_kept
    assert any(f"dedup: removed {stats['dedup']['removed']} duplicate records" in line for line in lines)
    assert "## Duplicates" in (root / "deduped" / "stats.md").read_text()
    again = build_dataset(load_recipe(_recipe(root, sources, "deduped", dedup={"exact": True})), force=True,
                          log=lambda *_: None)
    assert again["packing"]["content_sha256"] == stats["packing"]["content_sha256"]


def test_training_records_equal_to_a_held_out_text_are_dropped(corpus):
    """A mirror shop lists the feed's titles under its own product ids: where the feed's
    product is held out and the mirror's is not, the mirror's record leaves training."""
    root, sources = corpus
    mirror = root / "raw" / "mirror.jsonl"
    mirror.write_text("".join(json.dumps({"product_id": f"Q{i:05d}", "text": f"Feed title number {i} for a summer "
                                          "dress"}) + "\n" for i in range(30)), encoding="utf-8")
    with_mirror = sources + [{"name": "mirror", "kind": "domain", "language": "en", "format": "jsonl",
                              "path": str(mirror), "key": "product_id"}]
    stats = build_dataset(load_recipe(_recipe(root, with_mirror, "held", dedup={"exact": True},
                                              heldout={"share": 0.3, "max_documents": 10000})), log=lambda *_: None)
    held = [json.loads(line) for f in (root / "held" / "heldout").rglob("test.jsonl")
            for line in f.read_text(encoding="utf-8").splitlines()]
    feed_held = {normalized_hash(d["text"]) for d in held if d["source"] == "feed"}
    mirror_held = {d["key"] for d in held if d["source"] == "mirror"}
    expected = sum(1 for i in range(30) if f"Q{i:05d}" not in mirror_held
                   and normalized_hash(f"Feed title number {i} for a summer dress") in feed_held)
    mirror_stats = next(s for s in stats["sources"] if s["name"] == "mirror")
    assert expected > 0 and mirror_stats["duplicates_of_heldout"] == expected
    assert stats["dedup"]["removed_as_heldout"] == sum(s["duplicates_of_heldout"] for s in stats["sources"])
    assert mirror_stats["records"] == 30 - len(mirror_held) - expected - mirror_stats["duplicates"]


# ---------------------------------------------------------------- near duplicates

WORDS_EN = ("soft cotton summer dress with short sleeves light breathable fabric for daily wear in warm weather "
            "available in red blue black white sizes small medium large machine washable easy care classic cut "
            "round neck loose fit elegant casual office party beach travel gift premium quality stitching").split()
CHARS_ZH = "夏季新款女装连衣裙短袖纯棉面料柔软透气舒适百搭显瘦气质通勤休闲度假红蓝黑白小中大号可机洗经典版型圆领宽松优雅"


def _planted(language: str, clusters: int, seed: int) -> tuple[list[str], list[int]]:
    """``clusters`` distinct texts of 40-70 units, each with two light variants (one or
    two units changed, inserted or dropped): texts and their cluster ids."""
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for cluster in range(clusters):
        n = rng.randint(40, 70)
        units = [rng.choice(WORDS_EN) for _ in range(n)] if language == "en" else \
            [rng.choice(CHARS_ZH) for _ in range(n)]
        variants = [units]
        for _ in range(2):
            edited = list(units)
            for _ in range(rng.randint(1, 2)):
                at = rng.randrange(len(edited))
                move = rng.choice(("change", "insert", "drop"))
                pool = WORDS_EN if language == "en" else CHARS_ZH
                if move == "change":
                    edited[at] = rng.choice(pool)
                elif move == "insert":
                    edited.insert(at, rng.choice(pool))
                else:
                    del edited[at]
            variants.append(edited)
        for units_of in variants:
            texts.append(" ".join(units_of) if language == "en" else "".join(units_of))
            labels.append(cluster)
    return texts, labels


@pytest.mark.parametrize("language", ["en", "zh"])
def test_near_duplicates_are_found_with_high_precision_and_recall(language):
    from ecomharness.data.dedup import NearSpec, band_keys, cluster_drops, signature, similar_pairs

    spec = NearSpec()
    texts, labels = _planted(language, 150, seed=3 if language == "en" else 4)
    sigs = [signature(t, spec) for t in texts]
    buckets: dict[int, list[int]] = {}
    for i, sig in enumerate(sigs):
        for key in band_keys(sig, spec):
            buckets.setdefault(key, []).append(i)
    edges = set()
    for members in buckets.values():
        for a, b in similar_pairs([texts[i] for i in members], spec):
            edges.add((members[a], members[b]))
    true = {(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts)) if labels[i] == labels[j]}
    # Pairs of one cluster whose true Jaccard is under the threshold are not duplicates.
    from ecomharness.data.dedup import shingles

    def jaccard(i, j):
        a, b = set(shingles(texts[i], spec)), set(shingles(texts[j], spec))
        return len(a & b) / len(a | b)

    similar = {pair for pair in true if jaccard(*pair) >= spec.threshold}
    precision = len(edges & true) / len(edges)
    recall = len(edges & similar) / len(similar)
    assert precision >= 0.99 and recall >= 0.95, (precision, recall, len(similar))
    dropped = cluster_drops({i: (i, False, 0) for i in range(len(texts))}, sorted(edges))
    assert all(labels[k] == labels[kept] for k, kept in dropped.items())


def test_a_build_removes_near_duplicates_on_top_of_exact_ones(corpus):
    root, sources = corpus
    texts, labels = _planted("zh", 20, seed=9)
    near = root / "raw" / "near.jsonl"
    near.write_text("".join(json.dumps({"product_id": f"N{i:04d}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    with_near = sources + [{"name": "near", "kind": "domain", "language": "zh", "format": "jsonl",
                            "path": str(near), "key": "product_id"}]
    stats = build_dataset(load_recipe(_recipe(root, with_near, "near", dedup={"exact": True, "near": True})),
                          log=lambda *_: None)
    near_stats = next(s for s in stats["sources"] if s["name"] == "near")
    # What clustering every pair at Jaccard >= 0.8 (found by brute force) would remove.
    from ecomharness.data.dedup import NearSpec, cluster_drops, similar_pairs

    expected = len(cluster_drops({i: (i, False, 0) for i in range(len(texts))}, similar_pairs(texts, NearSpec())))
    assert expected >= 10
    assert 0.95 * expected <= near_stats["near_duplicates"] <= expected
    assert near_stats["records"] == 60 - near_stats["near_duplicates"]
    assert stats["dedup"]["near"]["removed"] >= near_stats["near_duplicates"]
    assert stats["dedup"]["near"]["largest"][0]["records"] >= 3
    with pytest.raises(UserError, match=r"near\.threshold: expected a Jaccard"):
        parse_dedup({"near": {"threshold": 1.0}}, "r")
    with pytest.raises(UserError, match=r"near deduplication runs after exact"):
        parse_dedup({"exact": False, "near": True}, "r")


def test_bucket_edges_join_the_clusters_every_pair_would():
    """The spanning edges of ``bucket_edges`` (each record compared with other clusters
    until one is similar) cluster exactly as every similar pair of every bucket does,
    on planted clusters and on one bucket holding them all (templated text)."""
    from ecomharness.data.dedup import NearSpec, bucket_edges, cluster_drops, shingles, similar_pairs

    spec = NearSpec()
    for language, seed in (("en", 5), ("zh", 6)):
        texts, _ = _planted(language, 60, seed=seed)
        sets = {i: set(shingles(t, spec)) for i, t in enumerate(texts)}
        rng = random.Random(seed)
        buckets = [sorted(rng.sample(range(len(texts)), 25)) for _ in range(40)] + [list(range(len(texts)))]
        every = sorted({(b[i], b[j]) for b in buckets for i, j in similar_pairs([texts[k] for k in b], spec)})
        nodes = {i: (i, False, 0) for i in range(len(texts))}
        spanning = bucket_edges(buckets, sets, spec.threshold)
        assert len(spanning) < len(every)
        assert cluster_drops(nodes, spanning) == cluster_drops(nodes, every)
