"""EcomInstruct's EcomGPT-compatible metrics (``*_ecomgpt``) against EcomGPT's own scorers
run on fixed outputs, and where they differ from our ``score``."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from ecomharness.formats.ecominstruct import read_ecominstruct
from ecomharness.metrics import corpus, ecomgpt, lmeval

REFERENCE = json.loads((Path(__file__).resolve().parent / "reference" / "ecomgpt_cases.json").read_text(encoding="utf-8"))
SETS = {case["name"]: case for case in REFERENCE["sets"]}
PROCESS = {"classification": lmeval.process_ecominstruct_classification,
           "extraction": lmeval.process_ecominstruct_extraction,
           "generation": lmeval.process_ecominstruct_generation}
KEYS = {"micro-f1": ("micro_f1_ecomgpt", lmeval.ecomgpt_micro_f1),
        "macro-f1": ("macro_f1_ecomgpt", lmeval.ecomgpt_macro_f1),
        "rouge-l-f1": ("rougeL_ecomgpt", lambda values: sum(values) / len(values))}


def _docs(case: dict, root: Path) -> list[dict]:
    folder = root / case["folder"]
    folder.mkdir()
    (folder / "meta-info.json").write_text(json.dumps(case["meta"], ensure_ascii=False), encoding="utf-8")
    (folder / "test.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in case["records"]) + "\n",
                                      encoding="utf-8")
    return read_ecominstruct(folder).docs


def _scored(case: dict, root: Path) -> tuple[list[dict], list[dict]]:
    docs = _docs(case, root)
    return docs, [PROCESS[doc["kind"]](doc, [answer]) for doc, answer in zip(docs, case["answers"])]


def _ours(out: list[dict]) -> dict:
    return {key: aggregate([o[name] for o in out]) for key, (name, aggregate) in KEYS.items()}


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_ecomgpt_metric_equals_ecomgpts_own_scorer_on_fixed_outputs(name, tmp_path):
    """Each ``*_ecomgpt`` metric equals what EcomGPT's scorer computes on the same outputs,
    to 1e-9, and the reader builds EcomGPT's gold answers exactly.

    The expected values in ``tests/reference/ecomgpt_cases.json`` were computed once by
    running the scorer classes of github.com/Alibaba-NLP/EcomGPT at
    eaa846f25bfb899dd1dee22e15cc8b288f11c239 (``src/data/task_cls.py``,
    ``src/data/task_extract.py``, called as ``src/eval.py`` calls them, on every
    record) with rouge 1.0.1, seqeval 1.2.2, numpy 2.4.6::

        PYTHONHASHSEED=0 /tmp/egvenv/bin/python tests/reference/run_ecomgpt.py /tmp/eg/src \\
            tests/reference/ecomgpt_cases.json

    (that script's docstring says how the checkout and the scratch environment were
    made; hash seeds 1, 2 and 3 give the same file). One set per scorer class (CLS,
    NER, Condition_Extract, Extract, Generate), English and Chinese: right answers,
    wrong ones, multi-label answers with partial credit, unreadable ones ("The answer
    is Service", "I am not sure ..."), odd casing, padding and punctuation ("Service.",
    " Ambience \\n", "Food,Price", "Brand:X", "颜色：..."), empty answers (scored as
    "error"), an NER answer with an empty span (every character tagged) and an NER set
    with nothing to find.

    Where EcomGPT's code cannot score: an answer in which the ``rouge`` package finds no
    sentence (" . " for classification, "." for NER and generation, ".." for condition
    extraction) makes ``evaluate`` raise ``ValueError: Hypothesis is empty.`` (condition
    extraction calls ``exit()``); there the compat metrics score the answer as "error",
    and equal the script run with that answer replaced by "error" (``substituted``).
    An NER corpus with no entity gets seqeval's NaN macro F1; ours is 0.0."""
    case = SETS[name]
    expected = case["expected"]
    docs, out = _scored(case, tmp_path)
    assert [doc["ecomgpt_answer"] for doc in docs] == expected["gold_answers"]
    if "error" in expected:
        assert expected["error"] in ("ValueError: Hypothesis is empty.", "SystemExit: None")
        for index in case["unscorable"]:
            assert ecomgpt.readable_answer(docs[index]["ecomgpt_scorer"], case["answers"][index]) == "error"
        expected = expected["substituted"]
    ours = _ours(out)
    for key, value in ours.items():
        if expected[key] == "nan":
            assert key == "macro-f1" and value == 0.0
            continue
        assert abs(value - expected[key]) <= 1e-9, (key, value, expected[key])


def test_the_scorer_class_comes_from_the_folder_name(tmp_path):
    """MEPAVE's NER folder carries another folder's meta-info task name
    (Condition_Extract); EcomGPT's eval.py takes the class from the folder name, and so
    does the reader."""
    docs = _docs(SETS["ner_chinese"], tmp_path)
    assert {doc["ecomgpt_scorer"] for doc in docs} == {"ner"}
    assert SETS["ner_chinese"]["meta"]["task"].split("-")[2] == "Condition_Extract"


def test_generation_is_scored_on_sets_of_characters():
    """EcomGPT's generation scorer passes strings where lists are expected: the "set" of
    an answer is the set of its characters, so a reversed title is a perfect match."""
    row = ecomgpt.document_scores("generate", "衫衬季春", "春季衬衫", ", ")["micro_f1_ecomgpt"]
    assert row[1:4] == [4, 4, 4]
    assert ecomgpt.micro_f1([row]) == 1.0


def test_macro_f1_is_the_f1_of_averaged_precision_and_recall():
    """Not the mean of the documents' F1: one document all right, one with precision 1
    and recall 1/4 gives F1(1, 5/8) = 0.769..., where the mean F1 would be 0.7."""
    rows = [ecomgpt.set_row({"a"}, {"a"}), ecomgpt.set_row({"a", "b", "c", "d"}, {"a"})]
    assert ecomgpt.macro_f1(rows) == pytest.approx(2 * 0.625 / 1.625, abs=1e-15)


def test_rouge_l_splits_on_whitespace_and_full_stops():
    """Unspaced Chinese is one word: one character off scores 0, where our ``rougeL``
    (per character) is high; a sentence split at "." matches piecewise."""
    assert ecomgpt.rouge_l("拾光简约浅灰色春季衬衣", "拾光简约浅灰色春季衬衫") == 0.0
    assert ecomgpt.rouge_l("a b. c", "a b c") > 0.5
    with pytest.raises(ValueError):
        ecomgpt.rouge_l(".", "a")


def test_ner_tags_every_character_of_every_occurrence():
    tags = ecomgpt.char_tags("ab ab", {"X": ["ab"]})
    assert tags == ["B-X", "I-X", "O", "B-X", "I-X"]
    assert ecomgpt.seqeval_entities(tags) == {("X", 0, 1), ("X", 3, 4)}
    assert ecomgpt.char_tags("abc", {"X": [""]}) == ["B-X"] * 3  # an empty span matches everywhere


def test_ner_spans_of_a_type_are_tagged_whatever_order_the_answer_lists_them():
    """EcomGPT keeps a type's spans in a set, so "laptop bag, laptop" and "laptop,
    laptop bag" tag the sentence alike (here: in sorted order, the empty span first);
    where they overlap, EcomGPT's own order follows the hash seed."""
    text = "a laptop bag and a laptop"
    one = ecomgpt.char_tags(text, ecomgpt.typed_spans("Product: laptop bag, laptop", ", "))
    other = ecomgpt.char_tags(text, ecomgpt.typed_spans("Product: laptop, laptop bag", ", "))
    assert one == other
    assert ecomgpt.seqeval_entities(one) == {("Product", 2, 11), ("Product", 19, 24)}


def test_ecomgpt_differs_from_our_score_on_a_casing_slip(tmp_path):
    """Our ``score`` reads "service" as the label Service; EcomGPT compares as written."""
    case = SETS["cls_multi_label"]
    docs, out = _scored(case, tmp_path)
    index = case["answers"].index("service")
    assert out[index]["score"] == 1.0
    assert out[index]["micro_f1_ecomgpt"][1] == 0


@pytest.mark.parametrize("name", sorted(SETS))
def test_count_forms_equal_the_aggregations(name, tmp_path):
    """The paired tests resample EcomGPT's F1s through count forms
    (``metrics/corpus.py``): on the full set they equal the aggregations."""
    case = SETS[name]
    _, out = _scored(case, tmp_path)
    for metric, aggregation in (("micro_f1_ecomgpt", "ecomgpt_micro_f1"), ("macro_f1_ecomgpt", "ecomgpt_macro_f1")):
        values = [o[metric] for o in out]
        form = corpus.count_form(aggregation, values)
        direct = getattr(lmeval, aggregation)(values)
        assert abs(form.value() - direct) <= 1e-12, (metric, form.value(), direct)
        # a resample that draws the first document twice and drops the last
        weights = np.ones(len(values))
        weights[0], weights[-1] = 2, 0
        resampled = [values[0]] + values[:-1]
        assert abs(form.value(weights[None, :])[0] - getattr(lmeval, aggregation)(resampled)) <= 1e-12
        c, b = corpus.paired_count_forms(aggregation, values, values[::-1])
        assert abs(b.value() - direct) <= 1e-12 and abs(c.value() - direct) <= 1e-12


def _random_rows(rng, n: int, scorer: str) -> list:
    if scorer == "set":
        items = ["a", "b", "c", "d"]
        return [ecomgpt.set_row(set(rng.sample(items, rng.randint(0, 3))), set(rng.sample(items, rng.randint(0, 3))))
                for _ in range(n)]
    kinds = ["Brand", "Product", "Component"]
    rows = []
    for _ in range(n):
        counts = []
        for kind in sorted(rng.sample(kinds, rng.randint(0, 3))):
            predicted, gold = rng.randint(0, 3), rng.randint(0, 3)
            counts.append([kind, rng.randint(0, min(predicted, gold)), predicted, gold])
        rows.append(["seqeval", [c for c in counts if c[2] or c[3]]])
    return rows


@pytest.mark.parametrize("scorer", ["set", "seqeval"])
@pytest.mark.parametrize("aggregation", ["ecomgpt_micro_f1", "ecomgpt_macro_f1"])
def test_count_forms_equal_the_aggregations_on_random_resamples(aggregation, scorer):
    """Resampled and paired, the count forms equal the aggregations on random rows
    (types present on one side only, documents with nothing to find)."""
    rng = np.random.default_rng(7)
    draw = random.Random(f"{aggregation}{scorer}")
    function = getattr(lmeval, aggregation)
    for _ in range(30):
        rows = _random_rows(draw, draw.randint(1, 30), scorer)
        form = corpus.count_form(aggregation, rows)
        assert abs(form.value() - function(rows)) <= 1e-12
        picks = rng.integers(0, len(rows), len(rows))
        weights = np.bincount(picks, minlength=len(rows))[None, :].astype(float)
        assert abs(form.value(weights)[0] - function([rows[i] for i in picks])) <= 1e-12
        other = _random_rows(draw, len(rows), scorer)
        c, b = corpus.paired_count_forms(aggregation, rows, other)
        assert abs(c.value(weights)[0] - function([rows[i] for i in picks])) <= 1e-12
        assert abs(b.value(weights)[0] - function([other[i] for i in picks])) <= 1e-12


def test_ecomgpt_rows_are_checked():
    with pytest.raises(ValueError, match="several scorers"):
        ecomgpt.micro_f1([ecomgpt.set_row({"a"}, {"a"}), ["seqeval", []]])
    assert math.isclose(ecomgpt.micro_f1([]), 0.0)
