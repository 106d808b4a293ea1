"""Record filters (data/filters.py): each built-in rule on English and Chinese text, bad
options named by field, a plugin filter, and a build that counts every drop per source
and reason, writes examples beside it and leaves the rest of the build as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ecomharness.data.build import build_dataset
from ecomharness.data.filters import FilterSpec, build_filter, character_shares, duplicate_share, top_ngram_share
from ecomharness.data.recipe import load_recipe, parse_recipe
from ecomharness.errors import UserError
from tests.conftest import corpus_with_tokenizer


def _check(name, **options):
    return build_filter(FilterSpec(name, options), f"filters[{name}]")


def test_length_counts_characters_and_words_in_either_script():
    check = _check("length", min_chars=10, max_chars=40)
    assert check("short", {}) == "too short"
    assert check("a sentence of fair length", {}) is None
    assert check("x" * 41, {}) == "too long"
    words = _check("length", min_words=5)
    assert words("two words", {}) == "too few words"
    assert words("红色连衣裙夏季", {}) is None  # seven CJK characters count as seven units
    assert words("红色", {}) == "too few words"


def test_repetition_shares_are_character_shares_as_gopher_defines_them():
    lines = "buy now\nbuy now\nbuy now\na real description of the dress"
    assert duplicate_share(lines.split("\n")) == pytest.approx(21 / (21 + 31))
    check = _check("repetition", max_duplicate_line_share=0.3)
    assert check(lines, {}) == "repeated lines"
    assert check("one line\nanother line\na third one", {}) is None
    paragraphs = _check("repetition", max_duplicate_paragraph_share=0.4)
    assert paragraphs("same para\n\nsame para\n\ndifferent", {}) == "repeated paragraphs"
    # The top 2-gram of a spammy English title, and of a Chinese one by characters.
    assert top_ngram_share("cheap dress cheap dress cheap dress for sale", 2) > 0.5
    assert top_ngram_share("这是一条很普通的商品描述没有重复", 2) == 0.0
    assert top_ngram_share("特价特价特价特价特价特价", 2) > 0.9
    ngram = _check("repetition", max_top_ngram_share=0.3)
    assert ngram("特价特价特价特价特价特价", {}) == "repeated n-gram"
    assert ngram("夏季新款女装连衣裙，面料柔软透气。", {}) is None


def test_character_classes_and_markup():
    shares = character_shares("<div>价格</div> 99元 !!!")
    assert shares["markup"] == pytest.approx(len("<div></div>") / len("<div>价格</div>99元!!!"))
    assert shares["digit"] == pytest.approx(2 / 19) and shares["symbol"] > shares["digit"]
    check = _check("characters", max_markup_share=0.3, max_digit_share=0.5)
    assert check("<p><b><i>x</i></b></p>", {}) == "too much markup"
    assert check("1234567 items", {}) == "too many digit characters"
    assert check("a plain sentence", {}) is None


def test_required_fields_and_script_share():
    check = _check("required_fields", fields=["title", "price"])
    assert check("t", {"title": "dress", "price": ""}) == "missing price"
    assert check("t", {"title": "dress", "price": 9}) is None
    cjk = _check("script", script="cjk", min_share=0.5)
    assert cjk("红色连衣裙夏季新款 red dress", {}) is None  # 9 CJK of 17 letters
    assert cjk("红色连衣裙 red dress", {}) == "not enough cjk script"  # 5 of 13
    assert cjk("a red dress 裙", {}) == "not enough cjk script"
    latin = _check("script", script="latin", min_share=0.9)
    assert latin("A red summer dress", {}) is None and latin("红色连衣裙", {}) == "not enough latin script"


@pytest.mark.parametrize("spec, message", [
    ({"name": "length"}, "needs at least one"),
    ({"name": "length", "min_chars": -1}, r"filters\[0\]\.min_chars: expected a whole number >= 0"),
    ({"name": "repetition", "max_duplicate_line_share": 1.5}, r"max_duplicate_line_share: expected a share"),
    ({"name": "characters", "max_emoji_share": 0.1}, "unknown option"),
    ({"name": "required_fields", "fields": "title"}, r"\.fields: expected a list"),
    ({"name": "script", "script": "cyrillic", "min_share": 0.5}, r"\.script: expected one of"),
    ({"name": "lenght", "min_chars": 3}, "unknown data filter 'lenght' \\(did you mean length"),
    ({"min_chars": 3}, "expected a mapping with a filter name"),
])
def test_bad_filter_options_fail_when_the_recipe_is_read(tmp_path, spec, message):
    recipe = {"output": str(tmp_path / "out"), "tokenizer": "tok", "sources": [
        {"name": "s", "kind": "domain", "language": "en", "format": "jsonl", "path": "x.jsonl", "filters": [spec]}]}
    with pytest.raises(UserError, match=message):
        parse_recipe(recipe, base=tmp_path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("filter_corpus")
    sources = corpus_with_tokenizer(root, n_products=120, n_general=240, seed=5, vocab_size=500)
    noisy = root / "raw" / "noisy_en.jsonl"
    rows = []
    for i in range(40):
        rows.append({"text": f"A plain review number {i} of a shirt that fits well and washes fine."})
        if i % 4 == 0:
            rows.append({"text": "BUY NOW\nBUY NOW\nBUY NOW\nBUY NOW\nclick"})
        if i % 5 == 0:
            rows.append({"text": "<div><span><b>%d</b></span></div>" % i})
        if i % 8 == 0:
            rows.append({"text": "ok"})
    noisy.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root, sources, noisy


def _recipe_file(root: Path, sources, name: str, **extra) -> Path:
    recipe = {"output": str(root / name), "tokenizer": str(root / "tok"), "seq_len": 64, "seed": 1,
              "sources": sources, "mixer": {"name": "graph", "min_records": 2, "max_records": 4}, **extra}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


FILTERS = [{"name": "length", "min_chars": 10}, {"name": "repetition", "max_duplicate_line_share": 0.5},
           {"name": "characters", "max_markup_share": 0.3}]


def test_a_build_counts_every_drop_by_source_and_reason_and_writes_examples(corpus):
    root, sources, noisy = corpus
    general = [{"name": "noisy_en", "kind": "general", "language": "en", "format": "jsonl", "path": str(noisy),
                "filters": FILTERS}]
    plain = build_dataset(load_recipe(_recipe_file(root, sources, "plain")), log=lambda *_: None)
    lines: list[str] = []
    stats = build_dataset(load_recipe(_recipe_file(root, sources + general, "filtered",
                                                   ratio={"general_languages": {"zh": 1, "en": 1}})),
                          log=lines.append)
    noisy_stats = next(s for s in stats["sources"] if s["name"] == "noisy_en")
    assert noisy_stats["filtered_by_reason"] == {"characters: too much markup": 8, "length: too short": 5,
                                                 "repetition: repeated lines": 10}
    assert noisy_stats["filtered"] == 23 and noisy_stats["records"] == 40 and noisy_stats["bad_records"] == 0
    assert stats["filtered_records"] == 23
    # Sources without filters say nothing of them: their stats are as before.
    assert all("filtered" not in s for s in stats["sources"] if s["name"] != "noisy_en")
    assert "filtered_records" not in plain
    examples = [json.loads(line) for line in (root / "filtered" / "filtered" / "noisy_en.jsonl").read_text().splitlines()]
    assert [e["reason"] for e in examples].count("length: too short") == 3
    assert examples[0]["where"].startswith(str(noisy)) and examples[0]["text"]
    report = (root / "filtered" / "stats.md").read_text()
    assert "## Filtered records" in report and "noisy_en: 23 of 63 dropped" in report


def test_filters_act_before_the_held_out_split_and_selection(corpus):
    """The held-out slice and selection see only the records the filters keep (one
    rendering pass decides for all of them)."""
    root, sources, noisy = corpus
    general = [{"name": "noisy_en", "kind": "general", "language": "en", "format": "jsonl", "path": str(noisy),
                "filters": FILTERS}]
    stats = build_dataset(load_recipe(_recipe_file(root, sources + general, "held",
                                                   ratio={"general_languages": {"zh": 1, "en": 1}},
                                                   heldout={"share": 0.2, "max_documents": 1000})),
                          log=lambda *_: None)
    held = (root / "held" / "heldout").rglob("test.jsonl")
    texts = [json.loads(line)["text"] for f in held for line in f.read_text(encoding="utf-8").splitlines()]
    assert texts and not any(t == "ok" or t.startswith("BUY NOW") or t.startswith("<div>") for t in texts)
    noisy_stats = next(s for s in stats["sources"] if s["name"] == "noisy_en")
    assert noisy_stats["records"] + stats["heldout"]["held_records"]["noisy_en"] == 40


def test_a_plugin_filter_is_used_like_a_built_in(corpus):
    from ecomharness import hookimpl
    from ecomharness.plugins import get_plugin_manager

    def banned_words(options, where):
        words = options.pop("words", None)
        if not isinstance(words, list):
            raise UserError(f"{where}.words: expected a list")

        def check(text, record):
            return "banned word" if any(w in text for w in words) else None

        return check

    class Plugin:
        @hookimpl
        def ecomharness_filters(self):
            return {"banned_words": banned_words}

    get_plugin_manager().register(Plugin(), name="test_filter_plugin")
    root, sources, noisy = corpus
    general = [{"name": "noisy_en", "kind": "general", "language": "en", "format": "jsonl", "path": str(noisy),
                "filters": [{"name": "banned_words", "words": ["shirt"]}]}]
    stats = build_dataset(load_recipe(_recipe_file(root, sources + general, "plugged",
                                                   ratio={"general_languages": {"zh": 1, "en": 1}})),
                          log=lambda *_: None)
    noisy_stats = next(s for s in stats["sources"] if s["name"] == "noisy_en")
    assert noisy_stats["filtered_by_reason"] == {"banned_words: banned word": 40}
