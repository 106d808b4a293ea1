"""FLARE's reference-compatible metrics against the published scorers run on fixed outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecomharness.metrics import lmeval, pixiu
from ecomharness.metrics.corpus import count_form

REFERENCE = json.loads((Path(__file__).resolve().parent / "reference" / "flare_cases.json").read_text(encoding="utf-8"))
EXPECTED = REFERENCE["expected"]


def _cls_doc(case: dict) -> dict:
    return {"target": case["choices"][case["gold"]], "label_set": case["choices"]}


def _headlines_doc(case: dict) -> dict:
    return {"target": case["choices"][case["gold"]], "label_set": case["choices"], "label_type": case["label_type"]}


def _ner_doc(case: dict) -> dict:
    return {"text": case["text"], "tokens": case["text"].split(), "bio_labels": case["label"]}


@pytest.mark.parametrize("name", sorted(REFERENCE["classification"]))
def test_fpb_and_fiqasa_compat_metrics_equal_pixiu_2023_and_finben_on_fixed_outputs(name):
    """``acc_pixiu`` / ``f1_pixiu`` and ``acc_finben`` / ``f1_finben`` equal what the
    published code computes on the same outputs, to 1e-9.

    Expected values in ``tests/reference/flare_cases.json`` were computed once by running
    ``src/tasks/flare.py`` of github.com/chancefocus/PIXIU at
    1fe354b361b4030caea74ee4d4ed9320e5814414 (PIXIU 2023) and of
    github.com/The-FinAI/PIXIU at da45ac467ca3a828621315881e33c68bca3bbb1f (FinBen's
    current scorer), scikit-learn 1.9.1, seqeval 1.2.2, with::

        /tmp/refvenv/bin/python tests/reference/run_flare.py /tmp/ref/pixiu2023/src/tasks \\
            /tmp/ref/finben/src/tasks tests/reference/flare_cases.json

    (that script's docstring says how the checkouts were made). The cases: right and
    wrong answers, odd casing, padding and punctuation, an answer naming two choices,
    no choice, empty answers, a set where every answer is missing and one with a single
    gold label."""
    cases = REFERENCE["classification"][name]
    out = [lmeval.process_finben_classification(_cls_doc(c), [c["answer"]]) for c in cases]
    for version in ("pixiu", "finben"):
        expected = EXPECTED[version]["classification"][name]
        assert [o[f"acc_{version}"] for o in out] == expected["acc"], version
        rows = [o[f"f1_{version}"] for o in out]
        aggregate = lmeval.f1_pixiu if version == "pixiu" else lmeval.f1_finben
        assert abs(aggregate(rows) - expected["f1"]) <= 1e-9, version
        # the count form (paired tests, bootstrap errors) agrees with the aggregation
        assert abs(count_form(f"f1_{version}", rows).value() - expected["f1"]) <= 1e-9, version


@pytest.mark.parametrize("name", sorted(REFERENCE["headlines"]))
def test_headlines_compat_metrics_equal_pixiu_2023_and_finben_on_fixed_outputs(name):
    """``avg_f1_pixiu`` and ``avg_f1_finben`` equal the published code's ``avg_f1`` on the
    same outputs, to 1e-9 (same commits and command as the FPB test above). The cases:
    "Yes" with a leading space or a trailing newline (yes for FinBen, no for PIXIU 2023),
    lower and upper case, punctuation, reasons after the answer, an empty answer."""
    cases = REFERENCE["headlines"][name]
    out = [lmeval.process_headlines(_headlines_doc(c), [c["answer"]]) for c in cases]
    for version in ("pixiu", "finben"):
        expected = EXPECTED[version]["headlines"][name]
        rows = [o[f"avg_f1_{version}"] for o in out]
        assert [int(row[2] != "yes") for row in rows] == expected["pred"], version
        aggregate = lmeval.avg_f1_pixiu if version == "pixiu" else lmeval.avg_f1_finben
        assert abs(aggregate(rows) - expected["avg_f1"]) <= 1e-9, version
        assert abs(count_form(f"avg_f1_{version}", rows).value() - expected["avg_f1"]) <= 1e-9, version


@pytest.mark.parametrize("name", sorted(REFERENCE["ner"]))
def test_ner_entity_f1_compat_metrics_equal_pixiu_2023_and_finben_on_fixed_outputs(name):
    """``entity_f1_pixiu`` and ``entity_f1_finben`` equal the published NER ``entity_f1``
    (its answer placement, ``process_text``, and seqeval's F1) on the same outputs, to
    1e-9, and the tags placed equal theirs word for word (same commits and command as
    the FPB test above). The cases: the gold answers themselves (an entity ending the
    sentence is never tagged, so they score 0.833), wrong case, wrong type, a type with a
    full stop, "X,TYPE" without a space, an entity inside a longer word, a comma inside
    an entity, a doubled space in the sentence, an "Answer:" prefix, an empty answer,
    "None", and a set with nothing to find (seqeval: 0)."""
    cases = REFERENCE["ner"][name]
    for version in ("pixiu", "finben"):
        expected = EXPECTED[version]["ner"][name]
        assert [pixiu.flare_ner_tags(c["answer"], c["text"]) for c in cases] == expected["tags"], version
        rows = [lmeval.process_ner(_ner_doc(c), [c["answer"]])[f"entity_f1_{version}"] for c in cases]
        assert abs(lmeval.seqeval_f1(rows) - expected["entity_f1"]) <= 1e-9, version
        assert abs(count_form("seqeval_f1", rows).value() - expected["entity_f1"]) <= 1e-9, version


def test_pixiu_and_finben_differ_where_the_issue_found_them():
    """The differences of PIXIU 2023 from FinBen's current code: F1's arguments swapped
    (a label weighed by how often it was named) and "Yes" not stripped."""
    rows = [["positive", "positive"], ["negative", "positive"], ["neutral", "neutral"], ["neutral", "missing"]]
    assert pixiu.pixiu_weighted_f1(rows) == pytest.approx((2 / 3 * 2 + 1 * 2 / 3) / 3)
    assert lmeval.f1_finben(rows) != pytest.approx(pixiu.pixiu_weighted_f1(rows))
    assert pixiu.pixiu_headlines_prediction(" Yes") == "no"
    assert pixiu.pixiu_headlines_prediction("Yes") == "yes"


def test_ner_score_is_the_corpus_entity_f1_and_flare_placement_differs_from_ours():
    """FLARE NER's ``score`` is the corpus entity F1 (the ``flare`` group reports NER by
    it), not the mean of per-document F1; FLARE's placement misses an entity that ends
    the sentence, which ours finds."""
    doc = {"text": "Shares of Lumora Bank rose in Frankfurt", "tokens": "Shares of Lumora Bank rose in Frankfurt".split(),
           "bio_labels": ["O", "O", "B-ORG", "I-ORG", "O", "O", "B-LOC"]}
    out = lmeval.process_ner(doc, ["Lumora Bank, ORG\nFrankfurt, LOC"])
    assert lmeval.ie_f1([out["score"]]) == 1.0 and out["document_f1"] == 1.0
    assert lmeval.seqeval_f1([out["entity_f1_pixiu"]]) == pytest.approx(2 / 3)
    nothing = lmeval.process_ner({**doc, "bio_labels": ["O"] * 7}, [""])
    assert lmeval.ie_f1([nothing["score"]]) == 1.0 and lmeval.seqeval_f1([nothing["entity_f1_finben"]]) == 0.0


def test_sklearn_weighted_f1_checks_its_inputs():
    with pytest.raises(ValueError, match="2 true labels but 1 predictions"):
        pixiu.sklearn_weighted_f1(["a", "b"], ["a"], ["a"])
    with pytest.raises(ValueError, match="BIO labels for"):
        pixiu.flare_ner_item("", "two words", ["O"])
