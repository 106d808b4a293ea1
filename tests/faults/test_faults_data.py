"""Fault injection for data builds (issue 15, items 10 and 11): non-text values, invalid
Unicode, template sandboxing, an all-empty side, folders left by a killed build."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from ecomharness.data.build import build_dataset
from ecomharness.data.recipe import load_recipe
from ecomharness.errors import UserError
from tests.conftest import BIN, corpus_with_tokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_corpus")
    return root, corpus_with_tokenizer(root, n_products=120, n_general=240, seed=5, vocab_size=500)


def _recipe(root: Path, sources, name, **extra) -> Path:
    recipe = {"output": str(root / name), "tokenizer": str(root / "tok"), "seq_len": 64, "seed": 0,
              "sources": sources, **extra}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def _with_extra(corpus, tmp_path, lines: list[str], **source):
    root, sources = corpus
    extra_file = tmp_path / "extra.jsonl"
    extra_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return root, sources + [dict(sources[0], name="extra", path=str(extra_file), **source)]


def test_null_list_and_dict_values_are_bad_records_not_text(corpus, tmp_path):
    good = {"product_id": "p1", "title": "好", "category": "c"}
    root, sources = _with_extra(corpus, tmp_path, [
        json.dumps(good, ensure_ascii=False),
        json.dumps({**good, "product_id": "p2", "title": None}),
        json.dumps({**good, "product_id": "p3", "title": ["a", "b"]}),
        json.dumps({**good, "product_id": ["p4"]}),
    ])
    with pytest.raises(UserError, match=r"extra.jsonl:2: .*field 'title' is NoneType None, not text"):
        build_dataset(load_recipe(_recipe(root, sources, "nulls")), log=lambda *_: None)
    stats = build_dataset(load_recipe(_recipe(root, sources, "nulls_skip", on_error="skip")), log=lambda *_: None)
    assert stats["sources"][-1]["records"] == 1
    assert stats["sources"][-1]["bad_by_reason"] == {"non-text value": 2, "non-text key": 1}


def test_a_lone_surrogate_is_a_bad_record_with_skip(corpus, tmp_path):
    root, sources = _with_extra(corpus, tmp_path, ['{"product_id": "p1", "title": "ok", "category": "c"}',
                                                   '{"product_id": "p2", "title": "bad \\ud800", "category": "c"}'])
    stats = build_dataset(load_recipe(_recipe(root, sources, "surrogate", on_error="skip")), log=lambda *_: None)
    assert stats["sources"][-1]["bad_by_reason"] == {"invalid Unicode": 1}


def test_templates_run_in_a_sandbox(corpus, tmp_path):
    root, sources = corpus
    marker = tmp_path / "pwned"
    attack = ("{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}{{ title }}")
    evil = [dict(s, template=attack) if s["kind"] == "domain" else s for s in sources]
    with pytest.raises(UserError):
        build_dataset(load_recipe(_recipe(root, evil, "evil")), log=lambda *_: None)
    assert not marker.exists()


def test_an_all_empty_domain_side_is_an_error(corpus, tmp_path):
    root, sources = corpus
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"product_id": "p1", "title": " ", "category": ""}\n', encoding="utf-8")
    domain_empty = [dict(s, path=str(empty)) if s["kind"] == "domain" else s for s in sources]
    with pytest.raises(UserError, match="no usable domain records") as caught:
        build_dataset(load_recipe(_recipe(root, domain_empty, "nodomain", on_error="skip")), log=lambda *_: None)
    # Why, in the message: the commonest reason and how often (issue 32, item 5).
    assert "the commonest reason: " in str(caught.value) and "x)" in str(caught.value), str(caught.value)


def test_sources_whose_every_record_is_bad_name_the_commonest_reason_and_its_count(corpus, tmp_path):
    """With on_error: skip and nothing usable anywhere, the error says why (issue 32,
    item 5): the counts, the commonest reason with its count, and the first bad record."""
    root, sources = corpus
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n" * 3 + '{"product_id": "p1", "title": 5}\n', encoding="utf-8")
    all_bad = [dict(s, path=str(bad)) for s in sources]
    with pytest.raises(UserError) as caught:
        build_dataset(load_recipe(_recipe(root, all_bad, "allbad", on_error="skip")), log=lambda *_: None)
    message = str(caught.value)
    count = 3 * len(sources)  # each source reads the same file
    assert message.startswith(f"no usable records in any source: {4 * len(sources)} record(s) skipped as bad; "
                              "the commonest reason: "), message
    assert f"({count}x); the first bad record: {bad}:1" in message, message


def test_folders_of_a_killed_build_are_removed_by_the_next(corpus):
    root, sources = corpus
    recipe = _recipe(root, sources, "killed")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = root / f".killed.building-{dead.pid}-abc"
    stale.mkdir()
    (root / ".killed.old-123").mkdir()
    result = subprocess.run([str(BIN / "ecomharness"), "data", "build", str(recipe)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "left by a build that was killed" in result.stdout
    assert not stale.exists() and not (root / ".killed.old-123").exists() and (root / "killed" / "stats.json").is_file()
