"""The end-to-end demo, on a reduced configuration (the full one is `make demo`)."""

from __future__ import annotations

import pytest

from ecomharness.demo.run import DemoConfig, run_demo
from ecomharness.demo.shop import held_out_texts, write_shop
from ecomharness.evaluation.ledger import read_ledger

pytestmark = pytest.mark.slow

SMALL = DemoConfig(n_products=400, n_general=1500, vocab_size=1500, seq_len=64, hidden_size=32, n_layer=2,
                   base_steps=10, cpt_steps=15, checkpoints=3, eval_limit=3, max_gen_toks=8)


def test_shop_corpus_keeps_test_titles_out(tmp_path):
    paths = write_shop(tmp_path, n_products=2000, n_general=10, seed=1)
    held = held_out_texts()
    assert held
    for name in ("products_zh", "products_en"):
        for line in paths[name].read_text(encoding="utf-8").splitlines():
            import json

            title = json.loads(line)["text"].split("\n")[0]
            assert title not in held


def test_demo_runs_every_stage_and_caches(tmp_path):
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", cfg=SMALL, log=lines.append)
    assert len(result["summary"]) == 5
    assert any("pre-train the base model" in line for line in lines)
    ledger = read_ledger(tmp_path / "demo" / "cpt_graph" / "eval" / "ledger.jsonl")
    assert [r["checkpoint"] for r in ledger] == ["init", "checkpoint-5", "checkpoint-10", "checkpoint-15"]
    assert all("gate" in r for r in ledger[1:])
    for name in ("report.md", "curves.png", "gate.md"):
        assert (tmp_path / "demo" / "report" / name).is_file()
    again: list[str] = []
    second = run_demo(tmp_path / "demo", cfg=SMALL, log=again.append)
    cached = [line for line in again if line.endswith(": cached")]
    assert len(cached) == 6  # corpus, tokenizer, 2 data builds, base model, its evaluation
    assert second["cpt_ecom"] == result["cpt_ecom"]  # seeded: the same run again
