"""Data selection (ETS-DACP, ETA-DACP) on constructed corpora where the answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from ecomharness.select.cache import ScoreCache
from ecomharness.select.choose import choose, combine, ranks
from ecomharness.select.scorers import PosEntropyScorer, SimilarityScorer

TASK = ["红色纯棉连衣裙 颜色: 红色", "黑色羊毛针织衫 材质: 羊毛", "Acmeflow waterproof backpack, free shipping"]
OTHER = ["研究人员在海洋生物领域取得了新的进展。", "The history of river towns is tied to trade.",
         "城市交通的讨论持续升温。", "Debate about climate change continues."]


def test_documents_copied_from_task_data_rank_first():
    scorer = SimilarityScorer(TASK)
    corpus = OTHER + TASK[:2] + ["完全无关的文字内容"]
    scores = scorer.score(corpus)
    top2 = set(np.argsort(-scores)[:2])
    assert top2 == {4, 5}
    assert scores[4] > 0.5 and max(scores[:4]) < scores[4]


def test_repetitive_text_has_lower_entropy():
    scorer = PosEntropyScorer()
    zh = scorer.score(["好好好好好好好好", "研究人员在海洋生物领域取得了新的进展，专家认为值得重视。"])
    en = scorer.score(["the the the the the the", "Researchers report new findings about marine life today."])
    assert zh[0] < zh[1] and en[0] < en[1]
    english = scorer.config["en"]
    assert scorer.methods == {"jieba.posseg": 2, english: 2}


def test_english_pos_entropy_uses_an_installed_tagger():
    tags = {"the": "DT", "cat": "NN", "sat": "VBD", "on": "IN", "mat": "NN", "a": "DT"}
    tagger = ("dict tagger", lambda words: [tags.get(w, "NN") for w in words])
    scorer = PosEntropyScorer(english_tagger=tagger)
    # same tags in both: a repeated noun phrase scores lower than a sentence with more kinds of words
    low, high = scorer.score(["cat mat cat mat", "the cat sat on a mat"])
    assert low == 0.0 and high > 1.0
    assert scorer.methods == {"dict tagger": 2} and scorer.config["en"] == "dict tagger"
    assert PosEntropyScorer(english_tagger=None).config["en"] == "token-type entropy"


def test_text_the_proxy_model_was_trained_on_has_lower_perplexity(tmp_path):
    import torch

    from ecomharness.demo.tiny import build_bloom, train_tokenizer
    from ecomharness.select.scorers import PerplexityScorer

    seen = "the quick brown fox jumps over the lazy dog near the river bank"
    unseen = "quarterly revenue of the bank rose sharply despite weaker loan demand"
    tokenizer = train_tokenizer([seen, unseen] * 5, vocab_size=300, out_dir=tmp_path)
    model = build_bloom(tokenizer, hidden_size=32, n_layer=2, n_head=2)
    ids = torch.tensor([tokenizer(seen)["input_ids"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(tmp_path)
    scores = PerplexityScorer(str(tmp_path), batch_size=2).score([seen, unseen])
    assert scores[0] < scores[1] / 2


def test_hard_and_soft_sampling_distributions():
    scores = np.linspace(0, 1, 100)
    assert choose(scores, 10, "hard").tolist() == list(range(90, 100))
    picks = np.zeros(100)
    for seed in range(300):
        picks[choose(scores, 10, "soft", temperature=0.5, seed=seed)] += 1
    # proportional to score^2: the top decile is drawn far more often than the bottom one
    assert picks[90:].sum() > 10 * picks[:10].sum()
    assert np.corrcoef(scores, picks)[0, 1] > 0.8
    flat = np.zeros(100)
    for seed in range(300):
        flat[choose(scores, 10, "soft", temperature=1000.0, seed=seed)] += 1
    assert flat[90:].sum() < 1.5 * flat[:10].sum()  # near uniform
    assert len(set(choose(scores, 10, "soft", seed=1).tolist())) == 10  # without replacement


def test_rank_combination_is_the_average_rank():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([30.0, 10.0, 20.0])
    assert ranks(a).tolist() == [0.0, 0.5, 1.0]
    assert ranks(np.array([1.0, 1.0, 2.0])).tolist() == [0.25, 0.25, 1.0]
    assert combine({"a": a, "b": b}, {"a": True, "b": True}).tolist() == [0.5, 0.25, 0.75]
    assert combine({"a": a, "b": b}, {"a": True, "b": False}).tolist() == [0.0, 0.75, 0.75]


def test_scores_are_cached_by_document_and_config(tmp_path):
    cache = ScoreCache(tmp_path)
    scorer = SimilarityScorer(TASK)
    first = cache.get_or_score(OTHER + TASK, scorer)
    assert cache.computed == 7 and cache.reused == 0
    again = cache.get_or_score(OTHER + TASK[:1], scorer)
    assert cache.computed == 7 and cache.reused == 5
    assert again.tolist() == first[:5].tolist()


def test_data_build_keeps_the_selected_fraction_and_reuses_scores(tmp_path):
    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe
    from ecomharness.testing.corpus import corpus_sources, write_corpus
    from ecomharness.demo.tiny import train_tokenizer

    paths = write_corpus(tmp_path / "raw", n_products=200, n_general=300, seed=4)
    texts = [json.loads(l).get("text") or json.dumps(json.loads(l), ensure_ascii=False)
             for p in paths.values() for l in p.read_text(encoding="utf-8").splitlines()]
    train_tokenizer(texts, vocab_size=500, out_dir=tmp_path / "tok")

    def recipe(name, fraction):
        raw = {"output": str(tmp_path / name), "tokenizer": str(tmp_path / "tok"), "seq_len": 64,
               "sources": corpus_sources(paths), "ratio": {"general_to_domain": None, "general_languages": None},
               "select": {"sources": ["descriptions_zh"], "sampling": {"mode": "hard", "fraction": fraction},
                          "scorers": {"similarity": {"tasks": ["ecom_icl_deg"]}, "pos_entropy": {}},
                          "cache_dir": str(tmp_path / "cache")}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        return load_recipe(tmp_path / f"{name}.yaml")

    lines: list[str] = []
    stats = build_dataset(recipe("a", 0.2), log=lines.append)
    chosen = stats["selection"]["sources"]["descriptions_zh"]
    total = chosen["records"]
    assert chosen["kept"] == round(0.2 * total)
    assert {s["name"]: s["records"] for s in stats["sources"]}["descriptions_zh"] == chosen["kept"]
    assert chosen["mean_score_kept"]["similarity"] >= chosen["mean_score"]["similarity"]
    assert stats["selection"]["scorers"]["pos_entropy"]["methods_used"] == {"jieba.posseg": total}
    again = build_dataset(recipe("b", 0.5), log=lines.append)
    assert again["score_cache"]["selection"]["computed"] == 0  # another fraction scores nothing again
    assert again["selection"]["sources"]["descriptions_zh"]["kept"] == round(0.5 * total)


def test_plugins_add_selectors():
    from ecomharness import hookimpl
    from ecomharness.plugins import get_plugin_manager
    from ecomharness.select.scorers import build_scorer

    class Length:
        config = {"scorer": "length"}
        higher_is_better = False

        def score(self, texts):
            return np.asarray([len(t) for t in texts], dtype=float)

    class Plugin:
        @hookimpl
        def ecomharness_selectors(self):
            return {"length": lambda options: Length()}

    get_plugin_manager().register(Plugin(), name="test_selector_plugin")
    scorer = build_scorer("length", {})
    assert scorer.score(["ab", "abcd"]).tolist() == [2.0, 4.0]
    assert combine({"length": np.array([2.0, 4.0])}, {"length": scorer.higher_is_better}).tolist() == [1.0, 0.0]


def _proxy_trained_on(texts: list[str], others: list[str], out_dir, steps: int = 80):
    """A tiny proxy LM (with its tokenizer in ``out_dir``) that has seen ``texts`` only."""
    import torch

    from ecomharness.demo.tiny import build_bloom, train_tokenizer

    tokenizer = train_tokenizer((texts + others) * 5, vocab_size=400, out_dir=out_dir)
    model = build_bloom(tokenizer, hidden_size=32, n_layer=2, n_head=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out_dir)
    return out_dir


def test_stage_order_sorts_and_shuffles_only_inside_stages():
    from ecomharness.select.curriculum import stage_order

    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    strict, parts = stage_order(scores, 1, descending=False, seed=0)
    assert strict.tolist() == [5, 1, 3, 4, 2, 0] and len(parts) == 1
    assert stage_order(scores, 1, descending=True, seed=0)[0].tolist() == [0, 2, 4, 3, 1, 5]
    staged, parts = stage_order(scores, 2, descending=False, seed=3)
    assert [sorted(p.tolist()) for p in parts] == [[1, 3, 5], [0, 2, 4]]
    assert set(staged[:3].tolist()) == {1, 3, 5}
    shuffles = {tuple(stage_order(scores, 2, False, seed)[0].tolist()) for seed in range(20)}
    assert len(shuffles) > 1  # the order inside a stage depends on the seed, the stages do not


def test_curriculum_packs_easy_samples_first_and_training_reads_them_in_order(tmp_path):
    from types import SimpleNamespace

    import datasets

    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe
    from ecomharness.train.run import _keep_curriculum_order

    easy = [f"the shop sells {w} bags and {w} shoes every day" for w in ("red", "blue", "green", "black")]
    hard = ["zq xv kj wp", "mm qq zz xx yy", "vk jq xz pw", "qz kx jv wz mp"]
    proxy = _proxy_trained_on(easy, hard, tmp_path / "proxy")
    corpus = tmp_path / "corpus.jsonl"
    # hard records first in the file, so a correct order is not the file order
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in hard + easy), encoding="utf-8")
    raw = {"output": str(tmp_path / "out"), "tokenizer": str(proxy), "seq_len": 16, "seed": 1,
           "sources": [{"name": "c", "kind": "domain", "language": "en", "format": "jsonl", "path": str(corpus)}],
           "mixer": {"name": "separate"}, "ratio": {"general_to_domain": None, "general_languages": None},
           "curriculum": {"by": "perplexity", "model": str(proxy), "stages": 2, "batch_size": 3,
                          "cache_dir": str(tmp_path / "cache")}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    stats = build_dataset(load_recipe(tmp_path / "r.yaml"), log=lambda *_: None)
    stages = stats["curriculum"]["stages"]
    assert [s["samples"] for s in stages] == [4, 4]
    assert stages[0]["max_score"] < stages[1]["min_score"]
    assert stats["score_cache"]["curriculum"]["computed"] == 8

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(proxy)
    blocks = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    text = tokenizer.decode([t for b in blocks for t, m in zip(b["input_ids"], b["attention_mask"]) if m])
    positions = {t: text.index(t) for t in easy + hard}
    assert max(positions[t] for t in easy) < min(positions[t] for t in hard)

    # rebuilding with strict order (one stage) scores nothing again
    raw["curriculum"]["stages"] = 1
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    again = build_dataset(load_recipe(tmp_path / "r.yaml"), force=True, log=lambda *_: None)
    assert again["score_cache"]["curriculum"] == {**again["score_cache"]["curriculum"], "computed": 0, "reused": 8}

    lines: list[str] = []
    recipe = SimpleNamespace(data=SimpleNamespace(path=str(tmp_path / "out" / "dataset")))
    training: dict = {}
    _keep_curriculum_order(recipe, training, lines.append)
    assert training == {"train_sampling_strategy": "sequential"} and "in order" in lines[0]
    explicit = {"train_sampling_strategy": "random"}
    _keep_curriculum_order(recipe, explicit, lines.append)
    assert explicit["train_sampling_strategy"] == "random" and "warning" in lines[1]


def test_curriculum_block_is_validated(tmp_path):
    from ecomharness.data.recipe import parse_recipe
    from ecomharness.errors import UserError

    base = {"output": "o", "tokenizer": "t", "sources": [{"name": "a", "kind": "domain", "language": "en",
                                                         "format": "jsonl", "path": "a.jsonl"}]}
    for bad, message in [({"stages": 0}, "curriculum.stages"), ({"order": "up"}, "curriculum.order"),
                         ([1], "curriculum: expected a mapping"), ({"by": 3}, "curriculum.by")]:
        with pytest.raises(UserError, match=message):
            parse_recipe({**base, "curriculum": bad}, base=tmp_path)
    spec = parse_recipe({**base, "curriculum": {"model": "m", "stages": 3}}, base=tmp_path).curriculum
    assert (spec.by, spec.stages, spec.order, spec.options) == ("perplexity", 3, "ascending", {"model": "m"})
    # paths resolve against the recipe's folder, as source paths do
    (tmp_path / "proxy").mkdir()
    recipe = parse_recipe({**base, "curriculum": {"model": "proxy", "cache_dir": "c"},
                           "select": {"scorers": {"perplexity": {"model": "proxy"}}}}, base=tmp_path)
    assert recipe.curriculum.options["model"] == str(tmp_path / "proxy")
    assert recipe.curriculum.cache_dir == str(tmp_path / "c")
    assert recipe.select.scorers["perplexity"]["model"] == str(tmp_path / "proxy")


def test_allocate_splits_the_budget_by_weight_and_refills_from_small_topics():
    from ecomharness.select.topics import allocate

    assert allocate({"a": 10, "b": 2, "c": 10}, 12) == {"a": 5, "b": 2, "c": 5}
    assert allocate({"a": 100, "b": 100}, 9, {"a": 2}) == {"a": 6, "b": 3}
    assert allocate({"a": 3, "b": 4}, 50) == {"a": 3, "b": 4}
    assert allocate({"a": 10, "b": 10}, 5, {"b": 0}) == {"a": 5, "b": 0}
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = {f"t{i}": int(n) for i, n in enumerate(rng.integers(0, 30, size=rng.integers(1, 6)))}
        k = int(rng.integers(0, 120))
        given = allocate(sizes, k)
        assert sum(given.values()) == min(k, sum(sizes.values()))
        assert all(0 <= given[t] <= sizes[t] for t in sizes)
        # topics with records left get equal shares (to one), never less than a topic that ran out
        hungry = [given[t] for t in sizes if given[t] < sizes[t]]
        if hungry:
            assert max(hungry) - min(hungry) <= 1
            assert all(given[t] <= min(hungry) + 1 for t in sizes)


def test_balanced_choice_evens_out_topics_and_keeps_the_best_inside_each():
    from ecomharness.select.topics import choose_balanced

    topics = ["big"] * 90 + ["small"] * 10
    scores = np.r_[np.linspace(1, 2, 90), np.linspace(0, 0.5, 10)]
    picked, report = choose_balanced(scores, topics, 10, "hard", 1.0, 0)
    assert report == {"big": {"records": 90, "kept": 5}, "small": {"records": 10, "kept": 5}}
    assert picked.tolist() == [85, 86, 87, 88, 89, 95, 96, 97, 98, 99]
    unbalanced = choose(scores, 10, "hard")
    assert all(i < 90 for i in unbalanced)  # without balance the small topic is never chosen


def test_keyword_topics_and_the_topic_classifier_hook():
    from ecomharness import hookimpl
    from ecomharness.errors import UserError
    from ecomharness.plugins import get_plugin_manager
    from ecomharness.select.topics import BalanceSpec, keyword_classifier

    keywords = keyword_classifier({"topics": {"apparel": ["裙", "shirt"], "bags": ["包", "backpack"]}})
    assert keywords.classify(["红色连衣裙", "A Shirt and a backpack and a BACKPACK", "双肩包", "天气"]) == [
        "apparel", "bags", "bags", "other"]
    with pytest.raises(UserError, match="options.topics"):
        keyword_classifier({"topics": {"apparel": []}})
    with pytest.raises(UserError, match="exactly one of field"):
        BalanceSpec({"field": "a", "classifier": "keywords"})
    with pytest.raises(UserError, match="weights"):
        BalanceSpec({"field": "a", "weights": {"x": -1}})
    assert BalanceSpec({"field": "cat"}).topics([{"cat": "x"}, {}], ["", ""]) == ["x", "(none)"]

    class ByLength:
        @hookimpl
        def ecomharness_topic_classifiers(self):
            return {"length": lambda options: type("C", (), {
                "classify": lambda self, texts: ["long" if len(t) > options["cut"] else "short" for t in texts]})()}

    get_plugin_manager().register(ByLength(), name="test_topic_plugin")
    spec = BalanceSpec({"classifier": "length", "options": {"cut": 3}})
    assert spec.topics([{}, {}], ["ab", "abcdef"]) == ["short", "long"]


def test_data_build_balances_selection_across_a_topic_field(tmp_path):
    from collections import Counter

    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import load_recipe
    from ecomharness.testing.corpus import corpus_sources, write_corpus
    from ecomharness.demo.tiny import train_tokenizer

    paths = write_corpus(tmp_path / "raw", n_products=300, n_general=10, seed=2)
    products = [json.loads(l) for l in paths["products_zh"].read_text(encoding="utf-8").splitlines()]
    sizes = Counter(p["category"] for p in products)
    train_tokenizer([p["title"] for p in products], vocab_size=300, out_dir=tmp_path / "tok")
    k = 180  # more than 8 x the smallest topic (19), so small topics run out and the rest refill
    assert min(sizes.values()) * len(sizes) < k < sum(sizes.values())
    raw = {"output": str(tmp_path / "out"), "tokenizer": str(tmp_path / "tok"), "seq_len": 64,
           "sources": corpus_sources(paths), "ratio": {"general_to_domain": None, "general_languages": None},
           "select": {"sources": ["products_zh"], "sampling": {"k": k}, "balance": {"field": "category"},
                      "cache_dir": str(tmp_path / "cache")}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    stats = build_dataset(load_recipe(tmp_path / "r.yaml"), log=lambda *_: None)
    chosen = stats["selection"]["sources"]["products_zh"]
    assert chosen["kept"] == k and stats["selection"]["balance"]["by"] == "field category"
    assert {t: v["records"] for t, v in chosen["topics"].items()} == dict(sizes)
    share = k / len(sizes)
    small = {t for t, n in sizes.items() if n <= share}
    assert small and all(chosen["topics"][t]["kept"] == sizes[t] for t in small)
    rest = [chosen["topics"][t]["kept"] for t in sizes if t not in small]
    assert max(rest) - min(rest) <= 1 and min(rest) > share  # the others share what small topics left
    assert max(sizes.values()) / min(sizes.values()) > 2  # the corpus itself is far from balanced


def _tiny_encoder(out_dir, texts):
    from transformers import BertConfig, BertModel

    from ecomharness.demo.tiny import train_tokenizer

    tokenizer = train_tokenizer(texts * 3, vocab_size=300, out_dir=out_dir)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out_dir)
    return out_dir


def test_similarity_with_a_local_encoder_and_the_sentence_transformers_layout(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ecomharness.select.scorers import similarity

    folder = _tiny_encoder(tmp_path / "enc", TASK + OTHER)
    task_file = tmp_path / "task.jsonl"
    task_file.write_text(json.dumps({"text": TASK[0]}, ensure_ascii=False) + "\n", encoding="utf-8")
    scorer = similarity({"file": str(task_file), "embedder": {"path": str(folder), "batch_size": 2}})
    assert scorer.config["embedder"] == "encoder" and scorer.config["pooling"] == "mean"
    scores = scorer.score(OTHER + [TASK[0]])
    assert np.argmax(scores) == len(OTHER) and scores[-1] == pytest.approx(1.0, abs=1e-5)

    # the vectors are the mask-weighted mean of the encoder's last hidden states
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(OTHER[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert np.allclose(scorer.embedder.transform(OTHER[:2]), expected, atol=1e-5)

    # a sentence-transformers folder says its pooling in 1_Pooling/config.json
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    cls = similarity({"file": str(task_file), "embedder": {"path": str(folder)}})
    assert cls.config["pooling"] == "cls"
    assert np.allclose(cls.embedder.transform(OTHER[:1])[0], torch.nn.functional.normalize(hidden[0, 0], dim=-1),
                       atol=1e-5)


def test_similarity_options_are_validated(tmp_path):
    from ecomharness.errors import UserError
    from ecomharness.select.scorers import similarity

    task_file = tmp_path / "task.jsonl"
    task_file.write_text('{"text": "红色连衣裙"}\n{"title": "no text"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"task.jsonl:2: expected a non-empty string field 'text'"):
        similarity({"file": str(task_file)})
    task_file.write_text('{"text": "红色连衣裙"}\nnot json\n', encoding="utf-8")
    with pytest.raises(UserError, match="invalid JSON"):
        similarity({"file": str(task_file)})
    task_file.write_text('{"text": "红色连衣裙"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="not a local HF model folder"):
        similarity({"file": str(task_file), "embedder": {"path": str(tmp_path)}})
    with pytest.raises(UserError, match="chars or jieba"):
        similarity({"file": str(task_file), "embedder": {"zh": "words"}})
    jieba_scorer = similarity({"file": str(task_file), "embedder": {"zh": "jieba"}})
    assert jieba_scorer.config["zh"] == "jieba"
    scores = jieba_scorer.score(["这条红色连衣裙很好看", "今天的天气很好"])
    assert scores[0] > scores[1]


def test_data_build_command_selects_balances_and_orders(tmp_path):
    from conftest import run_cli

    from ecomharness.testing.corpus import corpus_sources, write_corpus

    paths = write_corpus(tmp_path / "raw", n_products=60, n_general=20, seed=5)
    lines = [json.loads(l) for p in paths.values() for l in p.read_text(encoding="utf-8").splitlines()]
    texts = [r.get("text") or r.get("description") or r.get("title") or "" for r in lines]
    proxy = _proxy_trained_on([t for t in texts if t][:40], [t for t in texts if t][40:80], tmp_path / "proxy", steps=5)
    recipe = {"output": "out", "tokenizer": "proxy", "seq_len": 64, "sources": corpus_sources(paths),
              "ratio": {"general_to_domain": 1.0, "general_languages": {"zh": 1, "en": 1}},
              "select": {"sources": ["products_zh"], "sampling": {"mode": "soft", "fraction": 0.5},
                         "scorers": {"similarity": {"tasks": ["ecom_icl_deg"]}, "perplexity": {"model": "proxy"}},
                         "balance": {"field": "category"}},
              "curriculum": {"by": "perplexity", "model": "proxy", "stages": 2}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    result = run_cli("data", "build", "recipe.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "selection: kept products_zh" in result.stdout and "curriculum:" in result.stdout
    stats = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8"))
    assert stats["selection"]["balance"]["by"] == "field category"
    assert len(stats["curriculum"]["stages"]) == 2
    assert (tmp_path / ".selection-cache").is_dir()  # default cache beside the output
    broken = {**recipe, "curriculum": {"by": "perplexity", "model": "missing-model"}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    result = run_cli("data", "build", "recipe.yaml", "--force", cwd=tmp_path)
    assert result.returncode != 0 and "curriculum.model: a local proxy model path is needed" in result.stderr


def test_select_block_is_validated():
    from ecomharness.errors import UserError
    from ecomharness.select.stage import _sampling

    assert _sampling(None) == {"mode": "hard", "fraction": 0.1}
    for bad, message in [({"mode": "top"}, "sampling.mode"), ({"k": 5, "fraction": 0.2}, "k or fraction"),
                         ({"k": "5"}, "sampling.k"), ({"fraction": 1.5}, "sampling.fraction"),
                         ({"mode": "soft", "temperature": 0}, "sampling.temperature"), ([1], "expected a mapping")]:
        with pytest.raises(UserError, match=message):
            _sampling(bad)


def test_select_block_is_parsed_when_the_recipe_loads(tmp_path):
    from ecomharness.data.recipe import parse_recipe
    from ecomharness.errors import UserError

    base = {"output": "o", "tokenizer": "t", "sources": [
        {"name": "a", "kind": "domain", "language": "en", "format": "jsonl", "path": "a.jsonl"},
        {"name": "g", "kind": "general", "language": "en", "format": "jsonl", "path": "g.jsonl"}]}
    spec = parse_recipe({**base, "select": {"scorers": {"pos_entropy": {"weight": 2}}}}, "r.yaml", tmp_path).select
    assert (spec.sources, spec.scorers, spec.weights, spec.combine, spec.sampling) == (
        ("a",), {"pos_entropy": {}}, {"pos_entropy": 2.0}, "rank", {"mode": "hard", "fraction": 0.1})
    for bad, message in [
        ({"scorers": {"pos_entropy": {}}, "sources": ["x"]}, r"r\.yaml\.select\.sources: no source named x"),
        ({"scorers": {"pos_entropy": {"weight": -1}}}, r"r\.yaml\.select\.scorers\.pos_entropy\.weight"),
        ({"scorers": {"pos_entropy": {}}, "combine": "mean"}, r"r\.yaml\.select\.combine: expected one of rank, weights"),
        ({"scorers": {"pos_entropy": {}}, "seed": "1"}, r"r\.yaml\.select\.seed"),
        ({"scorers": {"pos_entropy": {}}, "sampling": {"fraction": 2}}, "select.sampling.fraction"),
        ({}, r"r\.yaml\.select\.scorers: name at least one scorer"),
        ([1], r"r\.yaml\.select: expected a mapping"),
    ]:
        with pytest.raises(UserError, match=message):
            parse_recipe({**base, "select": bad}, "r.yaml", tmp_path)
