"""The ECInstruct plugin (plugins/ecomharness-ecinstruct): its reader of the published
layout, its scoring, the oracle and the empty model on every task, and a tiny model
through both command lines."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError
from tests.conftest import BIN, run_cli

ecinstruct = pytest.importorskip("ecomharness_ecinstruct", reason="`make setup` installs the plugin")

from ecomharness_ecinstruct import data, layout, metrics  # noqa: E402

SAMPLE = Path(data.SAMPLE)
TASK_NAMES = sorted(f"ecinstruct_{short}_{setting}" for short, info in layout.TASKS.items()
                    for setting in (("ind", "ood") if info.ood else ("ind",)))


@pytest.fixture(autouse=True)
def _fresh_reads(monkeypatch):
    monkeypatch.setattr(data, "_TEST_RECORDS", {})
    monkeypatch.setattr(data, "_HUB", {})
    monkeypatch.setenv("ECOMHARNESS_OFFLINE", "1")


def _load(task: str, setting: str, **metadata):
    return data.load(ecinstruct={"task": task, "setting": setting}, **metadata)["test"]


# --- the layout -------------------------------------------------------------------------------

def test_sample_tasks_read_only_their_test_records_in_their_setting():
    records = json.loads((SAMPLE / "dataset.json").read_text(encoding="utf-8"))
    for short, info in layout.TASKS.items():
        for setting in ("ind", "ood") if info.ood else ("ind",):
            expected = [r for r in records if r["task"] in info.names and r["split"] == "test"
                        and r["setting"] == layout.SETTINGS[setting]]
            docs = _load(short, setting)
            assert len(docs) == len(expected) == 6
            assert [d["target_text"] for d in docs] == [r["output"].strip() for r in expected]
    # The sample also holds train records and another instruction setting, left out above.
    assert {r["split"] for r in records} == {"test", "train"}
    assert "IND_Single_Instruction" in {r["setting"] for r in records}


def test_json_lines_and_the_older_split_files_read_the_same(tmp_path):
    records = json.loads((SAMPLE / "dataset.json").read_text(encoding="utf-8"))
    lines = tmp_path / "lines" / "dataset.json"
    lines.parent.mkdir()
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    older = tmp_path / "older"
    older.mkdir()
    for setting in ("IND", "OOD"):
        kept = [{k: v for k, v in r.items() if k not in ("split", "setting")} for r in records
                if r["split"] == "test" and r["setting"] == f"{setting}_Diverse_Instruction"]
        (older / f"test_{setting}.json").write_text(json.dumps(kept), encoding="utf-8")
    expected = list(_load("sa", "ood")["target_text"])
    for path in (lines, lines.parent, older):
        data._TEST_RECORDS.clear()
        assert list(_load("sa", "ood", ecinstruct_path=str(path))["target_text"]) == expected


def test_spelling_variants_of_task_names_are_read(tmp_path):
    records = json.loads((SAMPLE / "dataset.json").read_text(encoding="utf-8"))
    renamed = [{**r, "task": "Product_Substitue_Identification"} if r["task"] == "Product_Substitute_Identification"
               else r for r in records]
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(renamed), encoding="utf-8")
    assert len(_load("psi", "ind", ecinstruct_path=str(path))) == 6


def test_bad_records_are_named_or_counted(tmp_path):
    records = json.loads((SAMPLE / "dataset.json").read_text(encoding="utf-8"))
    index = next(i for i, r in enumerate(records) if r["task"] == "Product_Matching" and r["split"] == "test")
    records[index] = {**records[index], "output": "maybe"}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(RecordError, match=rf"dataset.json:{index + 1}: field 'output' expected yes or no"):
        _load("pm", "ind", ecinstruct_path=str(path))
    data._TEST_RECORDS.clear()
    assert len(_load("pm", "ind", ecinstruct_path=str(path), on_error="skip")) == 5
    missing = [dict(records[0])]
    del missing[0]["instruction"]
    path.write_text(json.dumps(missing), encoding="utf-8")
    data._TEST_RECORDS.clear()
    with pytest.raises(RecordError, match=r"dataset.json:1: field 'instruction' is missing"):
        _load("ave", "ind", ecinstruct_path=str(path))


def test_a_given_path_without_the_tasks_records_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        _load("pm", "ind", ecinstruct_path=str(tmp_path / "nope"))
    path = tmp_path / "dataset.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(UserError, match="no IND_Diverse_Instruction test records of Product_Matching"):
        _load("pm", "ind", ecinstruct_path=str(path))


def test_ranking_needs_the_esci_labels_and_checks_their_count(tmp_path):
    with pytest.raises(UserError, match="ecinstruct_qpr_labels"):
        _load("qpr", "ind", ecinstruct_path=str(SAMPLE / "dataset.json"))
    labels = tmp_path / "label.json"
    labels.write_text(json.dumps([["E", "S"]] * 5), encoding="utf-8")
    with pytest.raises(UserError, match="5 label lists for 6 query-product ranking test records"):
        _load("qpr", "ind", ecinstruct_path=str(SAMPLE / "dataset.json"), ecinstruct_qpr_labels=str(labels))
    labels.write_text(json.dumps([["E", "X"]] * 6), encoding="utf-8")
    with pytest.raises(UserError, match=r"unknown ESCI label\(s\) \['X'\]"):
        _load("qpr", "ind", ecinstruct_path=str(SAMPLE / "dataset.json"), ecinstruct_qpr_labels=str(labels))


# --- scoring ----------------------------------------------------------------------------------

def test_yes_no_score_is_the_f1_of_yes():
    from sklearn.metrics import f1_score

    from ecomharness.metrics.lmeval import ie_f1

    rng = random.Random(3)
    gold = [rng.choice(["yes", "no"]) for _ in range(200)]
    answers = [rng.choice(["yes", "no", "maybe", ""]) for _ in range(200)]
    rows = [metrics.process_yesno({"gold": g}, [a])["score"] for g, a in zip(gold, answers)]
    expected = f1_score([g == "yes" for g in gold], [a == "yes" for a in answers])
    assert ie_f1(rows) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_matches_scikit_learn_counting_unreadable_answers_as_wrong():
    from sklearn.metrics import f1_score

    from ecomharness.metrics.lmeval import cls_macro_f1

    rng = random.Random(4)
    gold = [rng.choice("ABCDE") for _ in range(300)]
    answers = [rng.choice(["A: x", "B", "C: y", "D", "E", "", "??"]) for _ in range(300)]
    rows = [metrics.process_choice_macro_f1({"gold": g}, [a])["score"] for g, a in zip(gold, answers)]
    predicted = [a[0] if a and a[0] in "ABCDE" else "none" for a in answers]
    labels = sorted(set(gold) | (set(predicted) - {"none"}))
    assert cls_macro_f1(rows) == pytest.approx(f1_score(gold, predicted, labels=labels, average="macro"), abs=1e-12)


def test_ndcg_uses_every_candidates_gain_for_the_ideal_order():
    gains = [0.1, 1.0, 0.0]  # A is a substitute, B exact, C irrelevant
    assert metrics.ndcg(["B", "A", "C"], gains) == pytest.approx(1.0)
    ideal = (2 ** 1.0 - 1) / 1 + (2 ** 0.1 - 1) / 1.5849625007211563
    assert metrics.ndcg(["A", "B"], gains) == pytest.approx(((2 ** 0.1 - 1) + (2 ** 1.0 - 1) / 1.5849625007211563) / ideal)
    # Naming only the best candidate is not a perfect ranking (eCeLLM's script scores it 1).
    assert metrics.ndcg(["B"], gains) == pytest.approx(1 / ideal)
    assert metrics.ndcg(["Z", "B", "B"], gains) == pytest.approx(1 / ideal)
    assert metrics.process_ndcg({"gains": gains}, [""])["score"] == 0.0


def test_out_of_domain_extraction_counts_loose_matches_once():
    gold = [["color", "navy blue", "product title"], ["brand", "alder", "product title"]]
    answer = json.dumps([{"attribute": "color", "value": "navy", "source": "title"},
                         {"attribute": "color", "value": "blue", "source": "title"},
                         {"attribute": "size", "value": "m", "source": "title"}])
    ood = metrics.process_extraction({"gold": gold, "setting": "OOD_Diverse_Instruction"}, [answer])
    ind = metrics.process_extraction({"gold": gold, "setting": "IND_Diverse_Instruction"}, [answer])
    from ecomharness.metrics.lmeval import ie_f1, ie_precision, ie_recall

    assert ie_precision([ood["score"]]) == pytest.approx(1 / 3) and ie_recall([ood["score"]]) == 0.5
    assert ie_f1([ind["score"]]) == 0.0
    assert metrics.process_extraction({"gold": gold, "setting": "IND"}, ["not json"])["invalid"] == 1.0


# --- whole tasks ------------------------------------------------------------------------------

@pytest.mark.parametrize("model, expected", [("ecom-oracle", 1.0), ("ecom-empty", 0.0)])
def test_oracle_and_empty_model_on_every_task_and_group(tmp_path, model, expected):
    out = tmp_path / "out"
    result = run_cli("eval", "--model", model, "--tasks", "ecinstruct_ind,ecinstruct_ood", "--output_path", str(out),
                     env={"ECOMHARNESS_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    [file] = list(out.rglob("results_*.json"))
    results = json.loads(file.read_text(encoding="utf-8"))
    scores = {name: values["score,none"] for name, values in results["results"].items()}
    assert sorted(scores) == sorted(TASK_NAMES + ["ecinstruct_ind", "ecinstruct_ood"])
    assert all(value == expected for value in scores.values()), scores
    source = results["ecomharness"]["data_sources"]["ecinstruct_ave_ood"]
    assert source["origin"] == "bundled" and source["license"].startswith("CC-BY-4.0")
    assert source["dataset"] == "NingLab/ECInstruct" and source["documents"] == 6


@pytest.mark.slow
def test_tiny_model_scores_the_same_through_ecomharness_and_plain_lm_eval(tiny_model_dir, tmp_path):
    args = ["--model", "hf", "--model_args", f"pretrained={tiny_model_dir},dtype=float32", "--tasks",
            "ecinstruct_ood", "--limit", "3"]
    ours = run_cli("eval", *args, "--output_path", str(tmp_path / "ours"), env={"ECOMHARNESS_OFFLINE": "1"})
    assert ours.returncode == 0, ours.stderr[-3000:]
    tasks_path = run_cli("tasks-path").stdout.strip()
    plain = subprocess.run([str(BIN / "lm_eval"), *args, "--device", "cpu", "--include_path", tasks_path,
                            "--output_path", str(tmp_path / "plain")], capture_output=True, text=True,
                           env={**__import__("os").environ, "ECOMHARNESS_OFFLINE": "1"}, timeout=900)
    assert plain.returncode == 0, plain.stderr[-3000:]

    def scores(folder: Path) -> dict:
        [file] = list(folder.rglob("results_*.json"))
        found = json.loads(file.read_text(encoding="utf-8"))["results"]
        return {name: values["score,none"] for name, values in found.items()}

    assert scores(tmp_path / "ours") == scores(tmp_path / "plain")
    assert set(scores(tmp_path / "ours")) == {"ecinstruct_ood"} | {t for t in TASK_NAMES if t.endswith("_ood")}


@pytest.mark.parametrize("answer, letter", [
    ("B", "B"), ("b", "B"), ("B.", "B"), ("(B)", "B"), ("B: very positive", "B"), ("C) a lamp", "C"),
    ("The answer is B", "B"), ("Answer: C", "C"), ("answer is (D).", "D"),
    ("Positive", None), ("A great product", None), ("The answer is", None), ("Answer: none", None), ("", None),
])
def test_an_option_is_read_only_from_a_standalone_letter_or_an_explicit_answer(answer, letter):
    assert metrics.option_letter(answer) == letter
    scored = metrics.process_choice({"gold": "B"}, [answer])
    assert scored["invalid"] == float(letter is None)
    assert scored["acc"] == float(letter == "B")
    assert scored["macro_f1"] == [["B"], [letter] if letter else []]
