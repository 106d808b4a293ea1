"""Metrics, with values computed by hand in Chinese and English."""

from __future__ import annotations

import random

import pytest

from ecomharness.metrics import classification as cls
from ecomharness.metrics import extraction as ie
from ecomharness.metrics import reading
from ecomharness.metrics.finben import headlines_avg_f1
from ecomharness.metrics.rouge import lcs_length, rouge, rouge_l, score_tokens
from ecomharness.metrics.text import CJKTokenizer, normalize_label, tokenize

approx = pytest.approx


# ---------------------------------------------------------------- tokens and ROUGE


def test_tokenizer_keeps_chinese_characters_and_english_words():
    assert tokenize("Nike运动鞋 Air-Max 90，ＡＢＣ") == ["nike", "运", "动", "鞋", "air", "max", "90", "abc"]
    assert tokenize("  ") == []


@pytest.mark.parametrize("text", ["红色连衣裙", "The quick brown fox", "Nike运动鞋 2024款", "x"])
def test_identical_non_empty_strings_score_one(text):
    assert rouge_l(text, text) == 1.0
    scores = rouge(text, text)
    assert scores["rouge1"].fmeasure == 1.0 and scores["rougeL"].fmeasure == 1.0


def test_rouge_by_hand_chinese():
    # pred 红色裙 (3 chars) vs ref 红色连衣裙 (5): LCS 3 -> P 1, R 3/5, F 0.75
    s = rouge("红色裙", "红色连衣裙")
    assert (s["rougeL"].precision, s["rougeL"].recall, s["rougeL"].fmeasure) == approx((1, 0.6, 0.75))
    assert s["rouge1"].fmeasure == approx(0.75)
    # bigrams: pred {红色, 色裙}, ref {红色, 色连, 连衣, 衣裙}: overlap 1 -> P 1/2, R 1/4
    assert s["rouge2"].fmeasure == approx(1 / 3)


def test_rouge_by_hand_english_and_case():
    s = rouge("The cat sat", "the cat sat on the mat")
    assert s["rougeL"].fmeasure == approx(2 / 3)
    assert rouge_l("ＮＩＫＥ Air", "nike air") == 1.0


def test_rouge_empty_sides_and_multiple_references():
    assert rouge_l("", "红色") == 0.0
    assert rouge_l("红色", "") == 0.0
    assert rouge_l("红色", ["蓝色", "红色"]) == 1.0
    assert rouge("", "")["rouge1"].fmeasure == 0.0


def test_unknown_rouge_type_is_rejected():
    with pytest.raises(ValueError, match="unknown ROUGE type"):
        score_tokens(["a"], ["a"], "rougeX")


def test_scores_equal_rouge_score_on_the_same_tokens():
    from rouge_score.rouge_scorer import RougeScorer

    reference = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CJKTokenizer())
    rng = random.Random(7)
    vocab = list("红橙黄绿青蓝紫衣裙鞋") + ["nike", "air", "max", "2024", "pro"]
    for _ in range(300):
        target = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 40)))
        prediction = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 40)))
        ours = rouge(prediction, target)
        theirs = reference.score(target, prediction)
        for rouge_type in ("rouge1", "rouge2", "rougeL"):
            assert abs(ours[rouge_type].fmeasure - theirs[rouge_type].fmeasure) < 1e-9
            assert abs(ours[rouge_type].precision - theirs[rouge_type].precision) < 1e-9
            assert abs(ours[rouge_type].recall - theirs[rouge_type].recall) < 1e-9


def test_lcs_is_exact_for_many_distinct_tokens():
    a = [f"w{i}" for i in range(3000)]
    b = a[::2] + ["x"] * 10
    assert lcs_length(a, b) == 1500


# ---------------------------------------------------------------- classification

LABELS = ["negative", "positive", "neutral"]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Positive", {"positive"}),
        (" ＰＯＳＩＴＩＶＥ。", {"positive"}),
        ("The sentiment is negative.", {"negative"}),
        ("positive, because profits rose", {"positive"}),
        ("positive or negative", set()),  # names two labels: no single answer
        ("bullish", set()),
        ("", set()),
    ],
)
def test_match_labels_english(answer, expected):
    assert cls.match_labels(answer, LABELS) == frozenset(expected)


def test_match_labels_chinese_and_multi_label():
    zh = ["食品", "服装", "数码"]
    assert cls.match_labels("食品。", zh) == {"食品"}
    assert cls.match_labels("类别：数码", zh) == {"数码"}
    assert cls.match_labels("Food, Ambience", ["Food", "Ambience", "Price"], multi_label=True) == {"food", "ambience"}
    assert normalize_label("  Ｆｏｏｄ ！") == "food"


def _items(golds, preds):
    return [cls.cls_item(p or "", g, ["a", "b", "c"]) for g, p in zip(golds, preds)]


def test_accuracy_f1_missing_by_hand():
    items = _items(["a", "a", "b", "c"], ["a", "b", "b", None])
    assert cls.accuracy(items) == 0.5
    # a: tp1 fn1 -> 2/3; b: tp1 fp1 -> 2/3; c: fn1 -> 0
    assert cls.macro_f1(items) == approx(4 / 9)
    assert cls.weighted_f1(items) == approx((2 * 2 / 3 + 2 / 3 + 0) / 4)
    assert cls.missing_rate(items) == 0.25


def test_f1_equals_sklearn_when_every_answer_matches():
    from sklearn.metrics import f1_score

    rng = random.Random(3)
    for _ in range(20):
        golds = [rng.choice("abc") for _ in range(30)]
        preds = [rng.choice("abc") for _ in range(30)]
        items = _items(golds, preds)
        assert cls.macro_f1(items) == approx(f1_score(golds, preds, average="macro"))
        assert cls.weighted_f1(items) == approx(f1_score(golds, preds, average="weighted"))


def test_classification_empty_inputs():
    assert cls.accuracy([]) == 0.0 and cls.macro_f1([]) == 0.0 and cls.weighted_f1([]) == 0.0
    items = _items(["a", "b"], ["", ""])
    assert cls.accuracy(items) == 0.0 and cls.macro_f1(items) == 0.0 and cls.missing_rate(items) == 1.0


# ---------------------------------------------------------------- extraction


def test_parse_typed_lines_with_duplicates_and_full_width_colon():
    text = "颜色: 红色, 蓝色\n领型：圆领\n\n颜色:红色 \n no colon here"
    assert ie.parse_typed_lines(text) == {("颜色", "红色"), ("颜色", "蓝色"), ("领型", "圆领")}


def test_parse_entity_lines_and_spans():
    assert ie.parse_entity_lines("Apple Inc., ORG\n Tim Cook , PER\nnonsense") == {
        ("org", "apple inc"), ("per", "tim cook")
    }
    assert ie.parse_spans("Nike, 运动鞋，Nike\n阿迪达斯") == {("", "nike"), ("", "运动鞋"), ("", "阿迪达斯")}
    assert ie.parse("", "spans") == frozenset()
    with pytest.raises(ValueError, match="unknown extraction format"):
        ie.parse("x", "xml")


def test_micro_prf_by_hand():
    items = [
        ie.ExtractionItem(frozenset({("t", "a"), ("t", "b")}), frozenset({("t", "a"), ("t", "c")})),
        ie.ExtractionItem(frozenset({("t", "d")}), frozenset()),
    ]
    assert ie.micro_precision(items) == 0.5
    assert ie.micro_recall(items) == approx(1 / 3)
    assert ie.micro_f1(items) == approx(0.4)


def test_micro_prf_edge_cases():
    gold = frozenset({("颜色", "红色")})
    empty_pred = [ie.ExtractionItem(gold, frozenset())]
    assert ie.micro_f1(empty_pred) == 0.0 and ie.micro_precision(empty_pred) == 0.0
    nothing = [ie.ExtractionItem(frozenset(), frozenset())]
    assert ie.micro_f1(nothing) == 1.0
    spurious = [ie.ExtractionItem(frozenset(), frozenset({("x", "y")}))]
    assert ie.micro_f1(spurious) == 0.0
    unparseable = ie.extraction_item("I cannot answer that.", gold, "typed_lines")
    assert ie.micro_f1([unparseable]) == 0.0


def test_bio_spans_follow_seqeval():
    tags = ["B-PER", "I-PER", "O", "I-ORG", "I-ORG", "B-ORG"]
    assert ie.bio_spans(tags) == {("PER", 0, 2), ("ORG", 3, 5), ("ORG", 5, 6)}
    assert ie.bio_spans(["I-PER", "I-PER", "B-PER", "O"]) == {("PER", 0, 2), ("PER", 2, 3)}
    assert ie.bio_spans(["B-PER", "I-ORG"]) == {("PER", 0, 1), ("ORG", 1, 2)}
    assert ie.bio_spans([]) == frozenset()


def test_ner_entity_level():
    tokens = "Tim Cook leads Apple Inc .".split()
    gold = ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O"]
    perfect = ie.ner_item("Tim Cook, PER\nApple Inc, ORG", tokens, gold)
    assert ie.micro_f1([perfect]) == 1.0
    partial = ie.ner_item("tim cook, PER\nApple, ORG\nMicrosoft, ORG", tokens, gold)
    assert ie.micro_precision([partial]) == 0.5 and ie.micro_recall([partial]) == 0.5
    assert ie.micro_f1([ie.ner_item("", tokens, gold)]) == 0.0
    with pytest.raises(ValueError, match="BIO labels"):
        ie.ner_item("", tokens, gold[:-1])


# ---------------------------------------------------------------- reading comprehension


def test_squad_style_english():
    assert reading.exact_match("The Eiffel Tower!", ["eiffel tower"]) == 1.0
    assert reading.f1("the big red tower", ["red tower"]) == approx(0.8)
    assert reading.f1("nothing alike", ["red tower"]) == 0.0


def test_cmrc_style_chinese():
    assert reading.exact_match("北京。", ["北京"]) == 1.0
    assert reading.f1("北京大学", ["北京"]) == approx(2 / 3)
    assert reading.f1("北京大学", ["清华", "北京大学"]) == 1.0


def test_squad_v2_no_answer():
    assert reading.exact_match("", []) == 1.0 and reading.f1("", []) == 1.0
    assert reading.exact_match("Paris", []) == 0.0 and reading.f1("Paris", []) == 0.0
    assert reading.exact_match("", ["Paris"]) == 0.0 and reading.f1("", ["Paris"]) == 0.0


# ---------------------------------------------------------------- FinBen headlines


def test_headlines_average_f1_over_label_types():
    yes_no = ["yes", "no"]
    price_up = [cls.cls_item(p, g, yes_no) for g, p in [("yes", "yes"), ("no", "no")]]  # F1 1
    # past price: gold yes, no; pred yes, yes -> yes: tp1 fp1 -> 2/3, support 1; no: fn1 -> 0
    past = [cls.cls_item(p, g, yes_no) for g, p in [("yes", "yes"), ("no", "yes")]]
    items = [("price up", i) for i in price_up] + [("past price", i) for i in past]
    assert headlines_avg_f1(items) == approx((1.0 + (2 / 3 * 1 + 0 * 1) / 2) / 2)
    assert headlines_avg_f1([]) == 0.0
