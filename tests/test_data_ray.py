"""The Ray engine of ``data build``, in local Ray mode (2 CPUs): the same dataset as the
local engine, byte for byte (with filters, deduplication and decontamination on), for
any number of blocks; bad records counted the same; a source cut into several blocks; a killed worker
retried without duplicated samples."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from ecomharness.data.build import build_dataset
from ecomharness.data.recipe import load_recipe
from tests.conftest import corpus_with_tokenizer, run_cli

ray = pytest.importorskip("ray", reason="the ray engine's tests need the [ray] extra")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module (starting one costs seconds)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The synthetic corpus plus a source of bad records of every kind."""
    root = tmp_path_factory.mktemp("ray_corpus")
    sources = corpus_with_tokenizer(root, n_products=160, n_general=320, seed=4, vocab_size=500)
    bad = root / "raw" / "reviews_bad.jsonl"
    lines = []
    for i in range(60):
        lines.append(json.dumps({"product_id": f"P{i % 40:05d}", "text": f"review {i} of a product"}))
        if i % 7 == 0:
            lines.append("{not json")
        if i % 11 == 0:
            lines.append(json.dumps({"text": "a review without its product"}))
        if i % 13 == 0:
            lines.append(json.dumps(["a", "list"]))
        if i % 17 == 0:
            lines.append(json.dumps({"product_id": f"P{i:05d}", "text": "   "}))
        if i % 9 == 0 and i >= 10:  # a duplicate, re-typed, for deduplication
            lines.append(json.dumps({"product_id": f"P{i % 40:05d}", "text": f"REVIEW {i} OF A PRODUCT!"}))
    from ecomharness.data.contamination import task_documents

    # Two test documents of a bundled task, crawled into the reviews: decontamination finds them.
    planted = task_documents(["ecom_icl_pdc"])["ecom_icl_pdc"]
    lines += [json.dumps({"product_id": "P00003", "text": planted[i][1]}, ensure_ascii=False) for i in (2, 5)]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Filters on, so that every comparison with the local engine covers their counts and
    # the dropped records written beside the build.
    sources.append({"name": "reviews_bad", "kind": "domain", "language": "zh", "format": "jsonl", "path": str(bad),
                    "key": "product_id", "template": "{{ text }}",
                    "filters": [{"name": "length", "min_chars": 22}, {"name": "repetition", "max_top_ngram_share": 0.9}]})
    return root, sources


def _recipe(root: Path, sources, name: str, **extra) -> Path:
    recipe = {"output": str(root / name), "tokenizer": str(root / "tok"), "seq_len": 64, "seed": 3,
              "on_error": "skip", "sources": sources, "mixer": {"name": "graph", "min_records": 2, "max_records": 4},
              "heldout": {"share": 0.05, "max_documents": 9}, "shards": 3, "dedup": {"exact": True, "near": True},
              "decontaminate": {"tasks": ["ecom_icl_pdc"]}, **extra}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def build_dataset_ray(recipe, force: bool = False, log=print, **engine):
    """A build on the Ray engine (``engine``: RayEngine's options)."""
    from ecomharness.data.engine_ray import RayEngine

    return build_dataset(recipe, force=force, log=log, engine=RayEngine(**engine))


def _files(directory: Path) -> dict[str, bytes]:
    """Every output file but the recipe copy (which names its own output folder)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != "recipe.yaml"}


def test_ray_engine_builds_the_local_dataset_byte_for_byte_with_1_and_4_blocks(corpus, ray_session):
    import datasets


    root, sources = corpus
    local = build_dataset(load_recipe(_recipe(root, sources, "local")), log=lambda *_: None)
    expected = _files(root / "local")
    for blocks in (1, 4):
        stats = build_dataset_ray(load_recipe(_recipe(root, sources, f"ray{blocks}")), blocks=blocks,
                                  log=lambda *_: None)
        assert stats["engine"]["read_pieces"] >= len(sources)
        assert stats["packing"]["content_sha256"] == local["packing"]["content_sha256"]
        # Identical files, not only identical content: shards, state.json, stats.json,
        # stats.md and the held-out texts.
        assert _files(root / f"ray{blocks}") == expected
    assert local["packing"]["shards"] == 3 and local["heldout"]["documents_written"]
    # The sharded output is one dataset to datasets (and so to training).
    dataset = datasets.load_from_disk(str(root / "ray4" / "dataset"))
    assert len(dataset) == local["packing"]["blocks"]
    assert int(np.asarray(dataset["attention_mask"]).sum()) == local["packing"]["tokens"]


def test_bad_records_are_counted_identically_by_reason_and_example(corpus, ray_session):

    root, sources = corpus
    recipe = _recipe(root, sources, "bad_ray", shards=1)
    ray_stats = build_dataset_ray(load_recipe(recipe), blocks=6, log=lambda *_: None)
    local_stats = build_dataset(load_recipe(_recipe(root, sources, "bad_local", shards=1)), log=lambda *_: None)
    ray_bad = next(s for s in ray_stats["sources"] if s["name"] == "reviews_bad")
    local_bad = next(s for s in local_stats["sources"] if s["name"] == "reviews_bad")
    assert ray_bad["bad_by_reason"] == local_bad["bad_by_reason"] == {
        "empty text": 4, "missing key": 6, "unreadable": 14}
    assert ray_bad["bad_examples"] == local_bad["bad_examples"] and len(ray_bad["bad_examples"]) == 5
    assert ray_bad["filtered_by_reason"] == local_bad["filtered_by_reason"] == {"length: too short": 10}
    assert ray_bad["duplicates"] == local_bad["duplicates"] > 0
    assert ray_stats["dedup"] == local_stats["dedup"]
    assert ray_stats["contamination"] == local_stats["contamination"]
    assert {2, 5} <= set(local_stats["contamination"]["tasks"]["ecom_icl_pdc"]["found_ids"])
    assert local_bad["contaminated"] >= 2
    assert ":2: invalid JSON" in ray_bad["bad_examples"][0]  # the line number of the whole file


def test_a_source_too_large_for_one_block_is_read_in_pieces(corpus, ray_session, tmp_path):
    from ecomharness.data.engine_ray import plan_pieces

    root, sources = corpus
    # One domain file and one general file only: the domain file must be cut.
    two = [s for s in sources if s["name"] in ("products_zh", "general_zh")]
    recipe = load_recipe(_recipe(root, two, "big_ray", heldout=None, ratio={"general_languages": {"zh": 1}}))
    pieces = plan_pieces(recipe, blocks=8)
    domain_pieces = [p.piece for p in pieces if recipe.sources[p.source].name == "products_zh"]
    assert len(domain_pieces) >= 2
    assert [(p.start, p.end) for p in domain_pieces] == sorted((p.start, p.end) for p in domain_pieces)
    assert domain_pieces[0].start == 0 and domain_pieces[-1].end == Path(two[0]["path"]).stat().st_size
    ray_stats = build_dataset_ray(recipe, blocks=8, log=lambda *_: None)
    local_stats = build_dataset(load_recipe(_recipe(root, two, "big_local", heldout=None,
                                                    ratio={"general_languages": {"zh": 1}})), log=lambda *_: None)
    assert ray_stats["records"] == local_stats["records"] > 0
    assert _files(root / "big_ray") == _files(root / "big_local")


def test_killed_workers_are_retried_without_duplicated_samples(corpus, tmp_path):
    """A worker dies in the tokenize stage and another in the pack stage (after Ray has
    begun the stage): Ray runs their tasks again and the output is still the local one."""
    root, sources = corpus
    local = root / "local"
    if not local.exists():
        build_dataset(load_recipe(_recipe(root, sources, "local")), log=lambda *_: None)
    recipe = _recipe(root, sources, "ray_killed")
    markers = [tmp_path / "tokenize.killed", tmp_path / "pack.killed"]
    env = {**os.environ, "ECOMHARNESS_RAY_FAULT": f"tokenize:{markers[0]},pack:{markers[1]}"}
    result = run_cli("data", "build", str(recipe), "--engine", "ray", "--address", "local", "--blocks", "4",
                     env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(m.exists() for m in markers), "the fault was not injected"
    assert _files(root / "ray_killed") == _files(local)
    stats = json.loads((root / "ray_killed" / "stats.json").read_text())
    assert stats["packing"]["blocks"] == json.loads((local / "stats.json").read_text())["packing"]["blocks"]


def test_engine_errors_are_clear(corpus, ray_session, tmp_path):
    from ecomharness.errors import UserError

    root, sources = corpus
    mixcpt = _recipe(root, sources, "mixture", mixer={"name": "knowledge_mixture",
                                                      "instruction_sources": ["reviews_bad"]})
    with pytest.raises(UserError, match="needs every record at once"):
        build_dataset_ray(load_recipe(mixcpt), log=lambda *_: None)
    strict = _recipe(root, sources, "strict", on_error="raise")
    with pytest.raises(UserError, match=r"reviews_bad\.jsonl:2: invalid JSON"):
        build_dataset_ray(load_recipe(strict), blocks=2, log=lambda *_: None)
    assert not (root / "strict").exists()
    result = run_cli("data", "build", str(strict), "--blocks", "2")
    assert result.returncode != 0 and "--engine ray" in result.stderr


def test_selection_and_curriculum_on_scorer_actors_match_the_local_engine(corpus, ray_session, tmp_path):
    """Selection (soft sampling, balanced over a topic field: seeded draws over records in
    reading order) and a curriculum, scored by Ray actors through the shared cache."""

    root, sources = corpus
    def extra(cache):
        return {"select": {"sources": ["products_zh", "reviews_bad"], "scorers": {"pos_entropy": {}},
                           "sampling": {"mode": "soft", "fraction": 0.6, "temperature": 0.5},
                           "balance": {"field": "category"}, "cache_dir": str(tmp_path / cache)},
                "curriculum": {"by": "pos_entropy", "stages": 3, "cache_dir": str(tmp_path / cache)}}

    # The cache emptied between the two: each engine scores everything itself.
    local = build_dataset(load_recipe(_recipe(root, sources, "sel_local", **extra("cache"))), log=lambda *_: None)
    shutil.rmtree(tmp_path / "cache")
    lines: list[str] = []
    on_ray = build_dataset_ray(load_recipe(_recipe(root, sources, "sel_ray", **extra("cache"))), blocks=5,
                               scorer_actors=2, log=lines.append)
    assert _files(root / "sel_ray") == _files(root / "sel_local")
    chosen = local["selection"]["sources"]["products_zh"]
    assert 0 < chosen["kept"] < chosen["records"]
    assert len(on_ray["curriculum"]["stages"]) == 3
    assert on_ray["score_cache"]["selection"]["computed"] == chosen["records"] + \
        local["selection"]["sources"]["reviews_bad"]["records"]
    assert any("selection: kept products_zh" in line for line in lines)
    # Again on Ray, with the cache the first Ray build filled: the actors score nothing.
    again = build_dataset_ray(load_recipe(_recipe(root, sources, "sel_ray", **extra("cache"))), force=True, blocks=3,
                              log=lambda *_: None)
    assert again["score_cache"]["selection"]["computed"] == 0
    assert again["score_cache"]["curriculum"]["computed"] == 0
    assert _files(root / "sel_ray")["dataset/data-00000-of-00003.arrow"] == \
        _files(root / "sel_local")["dataset/data-00000-of-00003.arrow"]


def test_scorer_actors_the_cluster_cannot_place_stop_the_build_with_an_error(corpus, ray_session, monkeypatch):
    """Ray Data waits for an actor pool forever by default: a pool asking for more than
    the cluster has (here 64 CPUs an actor on 2) must end the build with an input error
    naming what was asked, within the stall timeout, and leave no output."""
    import time

    import ecomharness.data.engine_ray as engine_ray
    from ecomharness.errors import UserError

    root, sources = corpus
    monkeypatch.setattr(engine_ray, "_actor_pool", lambda size: {"concurrency": 1, "num_cpus": 64})
    recipe = _recipe(root, sources, "stalled", select={"sources": ["products_zh"], "scorers": {"pos_entropy": {}},
                                                        "sampling": {"mode": "soft", "fraction": 0.5}})
    start = time.monotonic()
    with pytest.raises(UserError, match=r"did not start within 5 s.*each asks for 64 CPU"):
        build_dataset_ray(load_recipe(recipe), blocks=2, stall_timeout=5, log=lambda *_: None)
    assert time.monotonic() - start < 120
    assert not (root / "stalled").exists()
    with pytest.raises(UserError, match="--stall-timeout: expected seconds"):
        build_dataset_ray(load_recipe(recipe), stall_timeout=0, log=lambda *_: None)
