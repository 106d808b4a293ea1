"""The CPT data pipeline on small hand-made corpora."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from ecomharness.data import mixers, ratio
from ecomharness.data.build import build_dataset
from ecomharness.data.recipe import RatioSpec, load_recipe, parse_recipe
from ecomharness.data.records import RecordTable
from ecomharness.errors import UserError
from tests.conftest import corpus_with_tokenizer, run_cli


def _table(sources, keys, kinds=None) -> RecordTable:
    n = len(sources)
    names = sorted(set(sources))
    return RecordTable(
        source=np.asarray([names.index(s) for s in sources], np.int16),
        language=np.zeros(n, np.int16),
        key=np.asarray(keys, np.int64),
        n_tokens=np.ones(n, np.int32),
        starts=np.arange(n, dtype=np.int64),
        ids=np.arange(n, dtype=np.int32),
        source_names=names,
        source_kinds=kinds or ["domain"] * len(names),
        languages=["zh"],
        uid=np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15),
    )


def _samples(mix):
    return [mix.order[a:b].tolist() for a, b in zip(mix.bounds[:-1], mix.bounds[1:])]


# ---------------------------------------------------------------- graph mixing


def test_graph_clusters_are_in_range_and_use_every_record_once():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 300, 2000)
    sources = [f"s{i}" for i in rng.integers(0, 4, 2000)]
    mix = mixers.graph(_table(sources, keys), {"min_records": 2, "max_records": 5}, seed=3)
    flat = [r for s in _samples(mix) for r in s]
    assert sorted(flat) == list(range(2000))
    table = _table(sources, keys)
    for sample in _samples(mix):
        if len(sample) > 1:
            assert 2 <= len(sample) <= 5
            assert len({int(k) for k in keys[sample]}) == 1  # one product per cluster
            assert len({int(table.source[r]) for r in sample}) >= 2  # connected
    assert sum(mix.cluster_sizes.values()) == len(mix)
    assert mix.counts["clusters"] + mix.counts["single_samples"] == len(mix)


def test_coverage_preference_on_a_constructed_graph():
    # key 0: one record each of A, B, C, D plus six of R; max 4 -> the first cluster takes
    # one of every source; the remaining R records cannot connect and are left over.
    sources = ["A", "B", "C", "D"] + ["R"] * 6
    mix = mixers.graph(_table(sources, [0] * 10), {"min_records": 2, "max_records": 4}, seed=0)
    clusters = [s for s in _samples(mix) if len(s) > 1]
    table = _table(sources, [0] * 10)
    coverage = [len({int(table.source[r]) for r in c}) for c in clusters]
    assert coverage[0] == 4
    assert mix.coverage[4] >= 1
    assert mix.counts["leftover_records"] == sum(1 for s in _samples(mix) if len(s) == 1)


def test_single_source_groups_and_small_groups_are_single_samples():
    sources = ["A", "A", "A", "B", "C"]
    keys = [0, 0, 0, 1, 1]  # key 0: one source only (no edges); key 1: two sources
    mix = mixers.graph(_table(sources, keys), {"min_records": 3, "max_records": 4}, seed=0)
    assert all(len(s) == 1 for s in _samples(mix))
    assert mix.counts["unlinked_records"] == 3 and mix.counts["leftover_records"] == 2


def test_records_without_key_and_determinism():
    sources = ["A", "B", "A", "B", "A"]
    keys = [0, 0, -1, 1, 1]
    first = mixers.graph(_table(sources, keys), {}, seed=5)
    second = mixers.graph(_table(sources, keys), {}, seed=5)
    assert first.order.tolist() == second.order.tolist()
    assert first.counts["records_without_key"] == 1


def test_graph_mixing_shuffles_within_clusters_by_seed():
    sources = ["A", "B", "C", "D"] * 50
    keys = np.repeat(np.arange(50), 4)
    orders = {tuple(mixers.graph(_table(sources, keys), {"max_records": 4}, seed=s).order.tolist()) for s in range(4)}
    assert len(orders) > 1


def test_mixer_options_are_validated():
    table = _table(["A"], [0])
    with pytest.raises(UserError, match="min_records <= max_records"):
        mixers.graph(table, {"min_records": 5, "max_records": 2}, seed=0)
    with pytest.raises(UserError, match="unknown option"):
        mixers.graph(table, {"max": 2}, seed=0)
    with pytest.raises(UserError, match="takes no options"):
        mixers.separate(table, {"x": 1}, seed=0)


def test_separate_makes_one_sample_per_record():
    mix = mixers.separate(_table(["A", "B", "A"], [0, 0, 1]), {}, seed=0)
    assert _samples(mix) == [[0], [1], [2]]


# ---------------------------------------------------------------- ratios


def test_ratios_are_met_within_two_percent():
    rng = np.random.default_rng(1)
    n_domain, n_zh, n_en = 500, 3000, 300  # en must be up-sampled, zh down-sampled
    tokens = np.r_[rng.integers(50, 150, n_domain), rng.integers(50, 150, n_zh), rng.integers(50, 150, n_en)]
    kind = np.r_[np.zeros(n_domain), np.ones(n_zh + n_en)].astype(np.int8)
    lang = np.r_[np.zeros(n_domain + n_zh), np.ones(n_en)].astype(np.int16)
    sel = ratio.draw_samples(tokens, kind, lang, np.arange(len(tokens), dtype=np.uint64), ["zh", "en"], RatioSpec(2.0, {"zh": 1.0, "en": 1.0}), seed=0)
    got = sel.tokens_by_group
    general = got["general/zh"] + got["general/en"]
    assert general / got["domain"] == pytest.approx(2.0, rel=0.02)
    assert got["general/zh"] / general == pytest.approx(0.5, rel=0.02)
    assert np.bincount(sel.samples, minlength=len(tokens))[n_domain + n_zh :].min() >= 1  # every en sample used
    assert np.bincount(sel.samples, minlength=len(tokens))[n_domain + n_zh :].max() >= 2  # en repeated


def test_ratio_errors_name_the_language():
    tokens, kind, lang = np.ones(4, np.int64), np.array([0, 1, 1, 1], np.int8), np.zeros(4, np.int16)
    with pytest.raises(UserError, match="asks for en"):
        ratio.draw_samples(tokens, kind, lang, np.arange(len(tokens), dtype=np.uint64), ["zh"], RatioSpec(2.0, {"zh": 1, "en": 1}), seed=0)


# ---------------------------------------------------------------- whole builds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, corpus_with_tokenizer(root, n_products=300, n_general=600, seed=2, vocab_size=600)


def _recipe(root: Path, sources, name="built", **extra) -> Path:
    recipe = {"output": str(root / name), "tokenizer": str(root / "tok"), "seq_len": 64, "seed": 0,
              "sources": sources, "mixer": {"name": "graph", "min_records": 2, "max_records": 4}, **extra}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_build_is_byte_identical_and_loses_no_tokens(corpus):
    import datasets

    root, sources = corpus
    stats = build_dataset(load_recipe(_recipe(root, sources)), log=lambda *_: None)
    first = _files(root / "built")
    build_dataset(load_recipe(_recipe(root, sources)), force=True, log=lambda *_: None)
    assert _files(root / "built") == first
    dataset = datasets.load_from_disk(str(root / "built" / "dataset"))
    mask = np.asarray(dataset["attention_mask"])
    assert mask.shape == (stats["packing"]["blocks"], 64)
    # every selected token (records, separators, EOS) is in a block
    assert int(mask.sum()) == stats["packing"]["tokens"]
    used = sum(s["tokens_used"] for s in stats["sources"])
    assert stats["packing"]["tokens"] >= used
    assert stats["ratios"]["general_to_domain_achieved"] == pytest.approx(2.0, rel=0.02)
    report = (root / "built" / "stats.md").read_text(encoding="utf-8")
    assert "| products_zh | domain | zh |" in report and "sources per domain sample" in report


def test_separate_baseline_and_other_formats(corpus, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, sources = corpus
    general = [s for s in sources if s["kind"] == "general"]
    rows = [json.loads(l) for l in Path(general[0]["path"]).read_text(encoding="utf-8").splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "g.parquet")
    with (tmp_path / "g.csv").open("w", encoding="utf-8") as fh:
        fh.write("id,text\n" + "".join(f'{r["id"]},"{r["text"]}"\n' for r in rows))
    variants = [dict(general[0], name="pq", format="parquet", path=str(tmp_path / "g.parquet")),
                dict(general[0], name="csv", format="csv", path=str(tmp_path / "g.csv"))]
    domain = [s for s in sources if s["kind"] == "domain"]
    stats = build_dataset(load_recipe(_recipe(root, domain + variants[:1], "sep", mixer={"name": "separate"},
                                              ratio={"general_to_domain": 2.0, "general_languages": {"zh": 1}})),
                          log=lambda *_: None)
    assert stats["samples"]["mixer_counts"]["single_samples"] == stats["samples"]["domain"]
    stats = build_dataset(load_recipe(_recipe(root, domain + variants[1:], "csv",
                                              ratio={"general_languages": {"zh": 1}})), log=lambda *_: None)
    assert stats["sources"][-1]["records"] == len(rows)


def test_bad_records_raise_with_file_and_line_or_are_counted(corpus, tmp_path):
    root, sources = corpus
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"product_id": "x1", "title": "好", "category": "c"}\n{"title": "无键"}\n'
                   '{"product_id": "x2", "category": "c"}\nnot json\n'
                   '{"product_id": "x3", "title": " ", "category": ""}\n', encoding="utf-8")
    extra = dict(sources[0], name="bad", path=str(bad))
    recipe = _recipe(root, sources + [extra], "bad")
    with pytest.raises(UserError, match=r"bad.jsonl:2: field 'product_id' \(the linking key\) is missing"):
        build_dataset(load_recipe(recipe), log=lambda *_: None)
    stats = build_dataset(load_recipe(_recipe(root, sources + [extra], "bad2", on_error="skip")), log=lambda *_: None)
    report = stats["sources"][-1]
    assert report["records"] == 1
    assert report["bad_by_reason"] == {"empty text": 1, "missing key": 1, "template field missing": 1, "unreadable": 1}
    assert not (root / "bad").exists()  # a failed build leaves nothing behind


def test_recipe_validation_names_the_field(tmp_path):
    with pytest.raises(UserError, match=r"sources\[0\]: unknown key 'tempalte' \(did you mean 'template'\?\)"):
        parse_recipe({"output": "o", "tokenizer": "t", "sources": [
            {"name": "a", "kind": "domain", "language": "zh", "format": "jsonl", "path": "x", "tempalte": ""}]})
    with pytest.raises(UserError, match=r"sources\[0\].kind: expected one of"):
        parse_recipe({"output": "o", "tokenizer": "t", "sources": [
            {"name": "a", "kind": "web", "language": "zh", "format": "jsonl", "path": "x"}]})
    with pytest.raises(UserError, match="ratio.general_to_domain"):
        parse_recipe({"output": "o", "tokenizer": "t", "ratio": {"general_to_domain": -1},
                      "sources": [{"name": "a", "kind": "domain", "language": "zh", "format": "jsonl", "path": "x"}]})


def test_cli_build_and_refusal_to_overwrite(corpus):
    root, sources = corpus
    path = _recipe(root, sources, "cli")
    result = run_cli("data", "build", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "general:domain achieved" in result.stdout
    again = run_cli("data", "build", str(path))
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli("data", "build", str(root / "missing.yaml"))
    assert bad.returncode == 2 and "no such recipe file" in bad.stderr


def test_plugins_add_source_formats_and_mixers(corpus, tmp_path):
    from ecomharness import hookimpl
    from ecomharness.data.mixers import Mix
    from ecomharness.plugins import get_plugin_manager

    def read_lines(path, options):
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            yield f"{path}:{number}", {"text": line}

    def pairs(table, options, seed):
        order = np.arange(len(table), dtype=np.int64)
        bounds = np.r_[np.arange(0, len(order), 2), len(order)].astype(np.int64)
        return Mix(order=order, bounds=bounds, counts=Counter(pairs=len(bounds) - 1))

    class Plugin:
        @hookimpl
        def ecomharness_data_sources(self):
            return {"lines": read_lines}

        @hookimpl
        def ecomharness_mixers(self):
            return {"pairs": pairs}

    get_plugin_manager().register(Plugin(), name="test_data_plugin")
    (tmp_path / "d.txt").write_text("红色连衣裙\n蓝色衬衫\n黑色卫衣\n", encoding="utf-8")
    root, sources = corpus
    general = [s for s in sources if s["kind"] == "general" and s["language"] == "zh"]
    domain = [{"name": "lines", "kind": "domain", "language": "zh", "format": "lines", "path": str(tmp_path / "d.txt")}]
    stats = build_dataset(load_recipe(_recipe(root, domain + general, "plug", mixer={"name": "pairs"},
                                              ratio={"general_languages": {"zh": 1}})), log=lambda *_: None)
    assert stats["samples"]["domain"] == 2 and stats["samples"]["mixer_counts"] == {"pairs": 2}
    with pytest.raises(UserError, match="unknown mixer 'pair' \\(did you mean pairs"):
        build_dataset(load_recipe(_recipe(root, domain, "plug2", mixer={"name": "pair"})), log=lambda *_: None)


@pytest.mark.slow
def test_multi_process_tokenization_gives_the_same_dataset(corpus):
    import dataclasses

    root, sources = corpus
    one = build_dataset(load_recipe(_recipe(root, sources, "np1")), log=lambda *_: None)
    recipe = dataclasses.replace(load_recipe(_recipe(root, sources, "np2")), num_proc=2, batch_size=500)
    two = build_dataset(recipe, log=lambda *_: None)
    assert _files(root / "np1" / "dataset") == _files(root / "np2" / "dataset")
    assert one["packing"] == two["packing"]


def test_knowledge_mixture_interleaves_instruction_samples_at_a_share(corpus):
    from ecomharness.resources import bundled_path

    root, sources = corpus
    domain = [s for s in sources if s["kind"] == "domain"]
    instructions = {"name": "instructions", "kind": "domain", "language": "zh", "format": "ecominstruct_sft",
                    "path": str(bundled_path("tasks") / "_samples" / "ecominstruct"), "options": {"split": "fewshot"}}
    stats = build_dataset(load_recipe(_recipe(
        root, domain + [instructions], "mixture", ratio={"general_to_domain": None, "general_languages": None},
        mixer={"name": "knowledge_mixture", "instruction_sources": ["instructions"], "instruction_share": 0.3,
               "max_records": 4})), log=lambda *_: None)
    counts = stats["samples"]["mixer_counts"]
    assert 0 < counts["instruction_samples"] < counts["instruction_records_available"]  # down-sampled
    assert abs(counts["instruction_share_permille"] - 300) <= 6  # within 2% of 0.3
    used = {s["name"]: s["tokens_used"] for s in stats["sources"]}
    assert used["instructions"] / sum(used.values()) == pytest.approx(0.3, rel=0.02)
    with pytest.raises(UserError, match="no domain source named nope"):
        build_dataset(load_recipe(_recipe(root, domain, "mixture2", mixer={
            "name": "knowledge_mixture", "instruction_sources": ["nope"]})), log=lambda *_: None)


def test_a_source_read_in_pieces_yields_exactly_the_whole_read(tmp_path):
    """Every built-in reader that can be cut: its pieces, read in order, give the whole
    read's records and locations, for any piece size (a line belongs to the piece it
    begins in; Parquet pieces are runs of row groups). A reader without pieces is one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ecomharness.data.sources import (SourcePiece, read_csv, read_jsonl, read_parquet, read_source_piece,
                                          source_pieces)

    lines = [json.dumps({"text": "é" * (i % 7) + f"line {i}"}, ensure_ascii=False) for i in range(50)]
    lines.insert(10, "{not json")
    lines.insert(20, "")
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "second file"}) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(100)]}), tmp_path / "c.parquet", row_group_size=7)
    (tmp_path / "d.csv").write_text('text\n"two\nlines"\nplain\n', encoding="utf-8")

    def plain(rows):
        return [(where, record if isinstance(record, dict) else str(record)) for where, record in rows]

    for reader, path in ((read_jsonl, str(tmp_path / "*.jsonl")), (read_parquet, str(tmp_path / "c.parquet")),
                         (read_csv, str(tmp_path / "d.csv"))):
        whole = plain(reader(path, {}))
        assert len(whole) > 1
        for target in (None, 1, 13, 200, 10 ** 9):
            pieces = source_pieces(reader, path, {}, target)
            assert all(not p.whole for p in pieces)
            read = plain(row for piece in pieces for row in read_source_piece(reader, piece, {}))
            assert read == whole, (reader.__name__, target)
        if reader is not read_csv:
            assert len(source_pieces(reader, path, {}, 13)) > len(source_pieces(reader, path, {}, None))

    def plugin_reader(path, options):
        yield "x:1", {"text": "from a plugin"}

    assert source_pieces(plugin_reader, "anything", {}, 13) == [SourcePiece("anything", whole=True)]
    assert list(read_source_piece(plugin_reader, SourcePiece("anything", whole=True), {})) == \
        [("x:1", {"text": "from a plugin"})]
