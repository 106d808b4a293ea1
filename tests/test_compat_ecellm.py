"""ECInstruct's eCeLLM-compatible metrics (``*_ecellm``) against eCeLLM's own script run on
fixed outputs, and where they differ from the plugin's ``score``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecomharness.metrics import lmeval

ecinstruct = pytest.importorskip("ecomharness_ecinstruct", reason="`make setup` installs the plugin")

from ecomharness_ecinstruct import data, ecellm, metrics  # noqa: E402

REFERENCE = json.loads((Path(__file__).resolve().parent / "reference" / "ecellm_cases.json").read_text(encoding="utf-8"))
SETS = {case["name"]: case for case in REFERENCE["sets"]}


def _scored(case: dict) -> list[dict]:
    """Each answer through the plugin's process function for the set's task."""
    out = []
    for index, (gold, answer) in enumerate(zip(case["gold"], case["answers"])):
        task = case["task"]
        if task in ("Product_Matching", "Answerability_Prediction"):
            out.append(metrics.process_yesno({"gold": gold.lower()}, [answer]))
        elif task in ("Sentiment_Analysis", "Multiclass_Product_Classification"):
            out.append(metrics.process_choice({"gold": data.answer_letter(gold)}, [answer]))
        elif task == "Sequential_Recommendation":
            out.append(metrics.process_hit_at_1({"gold": data.answer_letter(gold)}, [answer]))
        elif task == "Attribute_Value_Extraction":
            doc = {"gold": data.extraction_triples(gold, Path("cases"), index), "setting": case["setting"],
                   "target_text": gold}
            out.append(metrics.process_extraction(doc, [answer]))
        elif task == "Query_Product_Ranking":
            out.append(metrics.process_ndcg({"gains": [data.ESCI_GAIN[x] for x in case["labels"][index]]}, [answer]))
    return out


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_ecellm_metric_equals_ecellms_own_script_on_fixed_outputs(name):
    """Each ``*_ecellm`` metric equals what eCeLLM's evaluation computes on the same
    outputs, to 1e-9.

    The expected values in ``tests/reference/ecellm_cases.json`` were computed once by
    running ``evaluate.py`` of github.com/ninglab/eCeLLM at
    f364c18f6cd7e1208c1ec75cb514c66cd84c0d2f with scikit-learn 1.9.1, numpy 2.4.6::

        /tmp/refvenv/bin/python tests/reference/run_ecellm.py /tmp/ref/eCeLLM/evaluate.py \\
            tests/reference/ecellm_cases.json

    (that script's docstring says how the checkout was made and how the full-precision
    values are read). The cases: right and wrong yes/no, option, recommendation,
    attribute-value and ranking answers; unreadable ones ("Yes.", "The answer is C",
    "Positive", "c", "U", "not json at all", "Z,A"), which the script drops from the
    denominator; odd casing, padding and punctuation; empty answers; a JSON object
    where a list was asked for; repeated predictions; loose out-of-domain matches. One
    set holds an empty option answer, on which the script fails (``pred[0]``): there the
    metric counts the answer unreadable, and the test says so."""
    case = SETS[name]
    expected = case["expected"]
    out = _scored(case)
    if "error" in expected:
        assert expected["error"].startswith("IndexError")
        rows = [o["acc_ecellm"] for o in out]
        assert rows[-1] == ["B", None] and ecellm.accuracy(rows) == 1.0
        return
    close = {}
    if "f1_yes" in expected:
        rows = [o["f1_ecellm"] for o in out]
        close = {"acc": ecellm.accuracy(rows), "f1_yes": ecellm.yes_f1(rows)}
    elif "f1_macro" in expected:
        rows = [o["macro_f1_ecellm"] for o in out]
        close = {"acc": ecellm.accuracy(rows), "f1_macro": ecellm.macro_f1(rows)}
    elif case["task"] == "Sequential_Recommendation":
        rows = [o["hit_at_1_ecellm"] for o in out]
        close = {"acc": ecellm.accuracy(rows)}
    elif "total_f1" in expected:
        rows = [o["f1_ecellm"] for o in out]
        close = {"total_f1": ecellm.extraction_f1(rows)}
        assert sum(row[3] for row in rows) == expected["pred_skipped"]
    elif "avg_ndcg" in expected:
        values = [o["ndcg_ecellm"] for o in out]
        close = {"avg_ndcg": sum(values) / len(values)}
    if "skipped" in expected and "avg_ndcg" not in expected:
        assert sum(row[1] is None for row in rows) == expected["skipped"]
    assert close
    for key, value in close.items():
        assert abs(value - expected[key]) <= 1e-9, (key, value, expected[key])


def test_ecellm_drops_unreadable_answers_where_the_plugins_score_counts_them_wrong():
    """The issue's measurement: with 5% unreadable answers ("Positive" where a letter was
    asked for), eCeLLM's macro F1 is 1.0 (it drops them); ours counts them wrong."""
    docs = [{"gold": "ABCD"[i % 4]} for i in range(40)]
    answers = [doc["gold"] for doc in docs[:38]] + ["Positive", "Positive"]
    out = [metrics.process_choice(doc, [answer]) for doc, answer in zip(docs, answers)]
    assert ecellm.macro_f1([o["macro_f1_ecellm"] for o in out]) == 1.0
    assert lmeval.cls_macro_f1([o["macro_f1"] for o in out]) < 1.0
    assert sum(o["invalid"] for o in out) == 2.0


def test_ecellm_rows_are_checked():
    with pytest.raises(ValueError, match=r"\[gold, prediction or null\]"):
        ecellm.accuracy([["A"]])
