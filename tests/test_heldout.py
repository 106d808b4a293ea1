"""Held-out bits-per-byte (issue 18, item 1): the data build's held-out slice, and the
heldout_bpb tasks that read it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ecomharness.data.heldout import combine_masks, parse_heldout
from ecomharness.errors import UserError
from tests.conftest import corpus_with_tokenizer


def test_heldout_block_is_validated():
    assert parse_heldout({"share": 0.05}, "r.yaml").max_documents == 1000
    for bad, message in [({"share": 0}, r"r\.yaml\.heldout\.share"), ({"share": 1.5}, "share"),
                         ({"share": 0.1, "max_documents": 0}, "max_documents"), ([1], "expected a mapping"),
                         ({"share": 0.1, "shares": 1}, "unknown key 'shares'")]:
        with pytest.raises(UserError, match=message):
            parse_heldout(bad, "r.yaml")


def test_combine_masks_maps_selection_back_onto_every_record():
    import numpy as np

    base = {"a": np.array([True, False, True, True])}
    within = {"a": np.array([False, True, True])}
    assert combine_masks(base, within)["a"].tolist() == [False, False, True, True]


@pytest.mark.slow
def test_a_held_out_product_reaches_no_training_source(tmp_path):
    from ecomharness.data.build import build_dataset
    from ecomharness.data.engine_local import rendered_records
    from ecomharness.data.heldout import split_heldout
    from ecomharness.data.recipe import parse_recipe
    from ecomharness.registry import data_sources

    sources = corpus_with_tokenizer(tmp_path, n_products=300, n_general=400, seed=5, vocab_size=400)
    raw = {"output": str(tmp_path / "out"), "tokenizer": str(tmp_path / "tok"), "seq_len": 64, "seed": 7,
           "sources": sources, "heldout": {"share": 0.2, "max_documents": 25}}
    recipe = parse_recipe(raw, base=tmp_path)
    readers = {s.format: data_sources.get(s.format) for s in recipe.sources}
    split = split_heldout(recipe, recipe.heldout, rendered_records(recipe, readers))
    # Every record of a held-out product is held out, in every domain source.
    held_keys, kept_keys = set(), set()
    for source in recipe.sources:
        if source.kind != "domain":
            continue
        for (text, record), kept in zip(rendered_records(recipe, readers)(source), split.keep[source.name]):
            (kept_keys if kept else held_keys).add(record["product_id"])
    assert held_keys and not held_keys & kept_keys
    assert 0.1 < len(held_keys) / len(held_keys | kept_keys) < 0.3
    # The build: held-out records are out of the table, the documents are written.
    stats = build_dataset(recipe, log=lambda *_: None)
    total_held = sum(split.held.values())
    good = sum(s["records"] for s in stats["sources"])
    assert stats["heldout"]["held_records"] == split.held
    written = {}
    for folder in ("domain", "general_zh", "general_en"):
        lines = (tmp_path / "out" / "heldout" / folder / "test.jsonl").read_text(encoding="utf-8").splitlines()
        written[folder] = [json.loads(line) for line in lines]
        assert 0 < len(written[folder]) <= 25
    assert all(d["key"] in held_keys for d in written["domain"])
    assert good + total_held == sum(len(m) for m in split.keep.values())
    # Another order of the same files holds out the same products.
    for source in sources:
        path = Path(source["path"])
        lines = path.read_text(encoding="utf-8").splitlines()
        random.Random(1).shuffle(lines)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    again = split_heldout(recipe, recipe.heldout, rendered_records(recipe, readers))
    assert again.held == split.held
    assert sorted(d["text"] for d in again.documents["domain"]) == sorted(d["text"] for d in written["domain"])


@pytest.mark.slow
def test_bits_per_byte_is_lower_on_memorised_text_than_on_random_text(tiny_model_dir, tmp_path, offline_task_data):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecomharness.evaluation.checkpoint import CheckpointEvaluator, EvalSettings

    memorised = "The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire."
    rng = random.Random(0)
    noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(len(memorised)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    batch = tokenizer(memorised, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    scores = {}
    for name, text in (("memorised", memorised), ("noise", noise)):
        folder = tmp_path / name / "general_en"
        folder.mkdir(parents=True)
        (folder / "test.txt").write_text(text + "\n", encoding="utf-8")
        evaluator = CheckpointEvaluator(EvalSettings(tasks=("heldout_bpb_general_en",),
                                                     metadata={"heldout_dir": str(tmp_path / name)}))
        results = evaluator.evaluate_model(model, tokenizer)
        scores[name] = results["results"]["heldout_bpb_general_en"]["bits_per_byte,none"]
        assert evaluator.data_sources["heldout_bpb_general_en"]["origin"] == "explicit"
    assert scores["memorised"] < 0.5 * scores["noise"], scores
