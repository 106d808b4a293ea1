"""Right scores on the published releases (issue 14): the EcomInstruct release's folders
and answer layouts, FinBen folders under PIXIU's and the hub's names, and no document
lost without being counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ecomharness.tasks.data as taskdata
from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError
from ecomharness.formats.ecominstruct import folder_kind, kind_segment, read_ecominstruct
from ecomharness.metrics import classification as cls
from ecomharness.metrics import extraction, finben, lmeval
from ecomharness.resources import bundled_path
from ecomharness.tasks.data import load_task
from tests.conftest import SHARED_DATA, run_cli

ECOM = SHARED_DATA / "ecominstruct"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
PUBLIC_SAMPLES = bundled_path("tasks") / "_samples" / "ecominstruct_public"


pytestmark = pytest.mark.usefixtures("offline_task_data")


def _score(doc: dict, answer: str) -> dict:
    process = {"classification": lmeval.process_classification, "extraction": lmeval.process_extraction,
               "generation": lmeval.process_generation}[doc["kind"]]
    return process(doc, [answer])


def _real_and_sample_folders() -> list[Path]:
    folders = sorted(PUBLIC_SAMPLES.iterdir())
    if ECOM.is_dir():
        folders += sorted(ECOM.iterdir())
    return folders


# ---------------------------------------------------------------- readers and kinds


def test_kind_comes_from_the_folder_name_segment():
    assert kind_segment("EN-ABSA-CLS-review_topic_category") == ("classification", None)
    assert kind_segment("ZH-MEPAVE-NER-attribute_value_extraction") == ("extraction", "typed_lines")
    assert kind_segment("EN-Lenovo-Condition_Extract-Condition_Extract") == ("extraction", "spans")
    assert kind_segment("EN-Reddit_QA-Extract-Extract_QA") == ("extraction", "spans")
    assert kind_segment("ZH-OpenBG_Align-Generate-title_generate") == ("generation", None)
    assert kind_segment("ave") is None
    # The release's title-attribute meta-info says "GLS": the folder name decides.
    kind, fmt, source, warnings = folder_kind(Path("ZH-OpenBG_Align-CLS-title_attribute_matching"),
                                              {"task": "ZH-OpenBG_Align-GLS-title_attribute_matching"})
    assert (kind, source, warnings) == ("classification", "folder name", [])
    # MEPAVE NER's meta-info names the Condition_Extract task: the folder wins, with a warning.
    kind, fmt, source, warnings = folder_kind(Path("ZH-MEPAVE-NER-attribute_value_extraction"),
                                              {"task": "ZH-JAVE-Condition_Extract-attribute_value_detection"})
    assert (kind, fmt, source) == ("extraction", "typed_lines", "folder name") and len(warnings) == 1


@pytest.mark.parametrize("folder", _real_and_sample_folders(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_release_folder_loads_and_its_gold_scores_one_and_empty_scores_zero(folder):
    result = read_ecominstruct(folder)
    records = sum(1 for line in (folder / "test.json").read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(result.docs) == records and not result.skipped
    for doc in result.docs:
        gold, empty = _score(doc, doc["target_text"]), _score(doc, "")
        assert gold["score"] == 1.0, (folder.name, doc["target_text"])
        assert empty["score"] == 0.0
        if doc["kind"] == "classification":
            assert gold["acc"] == 1.0 and empty["missing"] == 1.0


def test_a_generation_folder_without_label_set_and_spans_without_type(tmp_path):
    folder = tmp_path / "ZH-Shop-Generate-title"
    folder.mkdir()
    (folder / "meta-info.json").write_text(json.dumps({"task": folder.name, "defi": "title",
                                                       "test_prompt": {"instruction": "{sentences}\n### Response:"}}))
    (folder / "test.json").write_text(json.dumps(
        {"sentences": "颜色#:#红色", "label_set": [""], "spans": [{"term": "红色连衣裙", "start": 0, "end": 0}]},
        ensure_ascii=False) + "\n", encoding="utf-8")
    [doc] = read_ecominstruct(folder).docs
    assert doc["kind"] == "generation" and doc["target"] == "红色连衣裙" and doc["label_set"] == []


def test_offsets_that_disagree_with_the_term_are_counted_not_rejected(tmp_path):
    folder = tmp_path / "EN-QA-Extract-qa"
    folder.mkdir()
    (folder / "meta-info.json").write_text(json.dumps({"task": folder.name}))
    rows = [{"sentences": "Context: charge it first\nQuestion: how?", "spans": [{"term": "charge it", "start": 0, "end": 9}]},
            {"sentences": "Context: ok\nQuestion: x?", "spans": [{"term": "ok", "start": 9, "end": 11}]}]
    (folder / "test.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = read_ecominstruct(folder)
    assert len(result.docs) == 2 and result.meta["offset_mismatches"] == 1
    assert result.docs[0]["gold_spans"] == [["", "charge it"]]


def test_a_classification_folder_without_any_label_set_is_an_error(tmp_path):
    folder = tmp_path / "EN-X-CLS-topic"
    folder.mkdir()
    (folder / "meta-info.json").write_text(json.dumps({"task": folder.name}))
    (folder / "test.json").write_text(json.dumps({"sentences": "a", "labels": {"default": ["x"]}}) + "\n")
    with pytest.raises(RecordError, match="test.json:1: field 'label_set' is missing here and in meta-info.json"):
        read_ecominstruct(folder)


def test_a_task_mapped_to_a_folder_of_another_kind_is_an_error():
    with pytest.raises(UserError, match="this task scores extraction, but the folder is classification"):
        read_ecominstruct(PUBLIC_SAMPLES / "ZH-OpenBG_Align-CLS-item_align", kind="extraction")


# ---------------------------------------------------------------- answer parsing


def test_ecomgpt_typed_lines_with_none_score_one():
    gold = extraction.gold_set([("Brand", "Toshiba"), ("Product", "Satellite U405")])
    answer = "Attribute: None\nBrand: Toshiba\nComponent: None\nProduct: Satellite U405"
    item = extraction.extraction_item(answer, gold, "typed_lines")
    assert extraction.document_f1(item) == 1.0
    assert extraction.parse_typed_lines("颜色: None\n领型：圆领") == {("领型", "圆领")}


def test_untyped_lists_and_gold_terms_with_separators_are_never_split():
    gold = extraction.gold_set([("", "widescreen , HD display"), ("", "Gyration")], typed=False)
    item = extraction.extraction_item("widescreen , HD display, Gyration", gold, "spans")
    assert extraction.document_f1(item) == 1.0
    assert extraction.parse_spans("圆领, 拼接") == {("", "圆领"), ("", "拼接")}
    assert extraction.parse_spans("None") == frozenset()
    # Without a gold term to keep whole, separators split as before.
    assert extraction.split_terms("a, b；c") == ["a", "b", "c"]


@needs_shared
def test_real_lenovo_gold_terms_with_commas_score_one():
    docs = read_ecominstruct(ECOM / "EN-Lenovo-NER-NER").docs
    with_sep = [d for d in docs if any("," in t or ";" in t for _, t in d["gold_spans"])]
    assert with_sep, "the shared Lenovo folder has gold terms containing , or ;"
    assert all(lmeval.process_extraction(d, [d["target_text"]])["score"] == 1.0 for d in with_sep)


@pytest.mark.parametrize(
    "answer, labels, multi, expected, ambiguous",
    [
        ("not match, match", ["not match", "match"], False, set(), True),  # label-list echo
        ("They do not match.", ["not match", "match"], False, {"not match"}, False),
        ("MATCH!", ["not match", "match"], False, {"match"}, False),
        ("positive or negative", ["negative", "positive", "neutral"], False, set(), True),
        ("Food, Service, Price, Ambience, Anecdotes/Miscellaneous",
         ["Food", "Service", "Price", "Ambience", "Anecdotes/Miscellaneous"], True, set(), True),
        ("Food, Ambience", ["Food", "Service", "Price", "Ambience"], True, {"food", "ambience"}, False),
        ("bullish", ["negative", "positive"], False, set(), False),
    ],
)
def test_classification_rules(answer, labels, multi, expected, ambiguous):
    match = cls.match_answer(answer, labels, multi_label=multi)
    assert match.labels == frozenset(expected) and match.ambiguous == ambiguous
    assert match.missing == (not expected and not ambiguous)


def test_label_list_echo_scores_zero_and_counts_as_ambiguous():
    doc = {"kind": "classification", "target": ["not match"], "label_set": ["not match", "match"],
           "target_text": "not match", "multi_label": False}
    scored = lmeval.process_classification(doc, ["not match, match"])
    assert (scored["acc"], scored["ambiguous"], scored["missing"]) == (0.0, 1.0, 0.0)


# ---------------------------------------------------------------- FinBen


def test_finben_reference_parsing():
    choices = ["positive", "neutral", "negative"]
    # FinBen takes the first choice in list order found anywhere in the answer.
    assert finben.finben_choice("negative, not positive", choices) == "positive"
    assert finben.finben_choice("Bullish", choices) == "missing"
    rows = [("positive", "positive"), ("negative", "missing"), ("negative", "negative"), ("neutral", "positive")]
    # positive: tp1 fp1 -> 2/3 (support 1); negative: tp1 fn1 -> 2/3 (2); neutral: 0 (1)
    assert finben.finben_weighted_f1(rows) == pytest.approx((2 / 3 + 2 * 2 / 3) / 4)
    assert finben.finben_headlines_prediction("Yes") == "yes"
    assert finben.finben_headlines_prediction("yes.") == "no"
    assert finben.finben_headlines_avg_f1([("t", "yes", "yes"), ("t", "no", "no"), ("u", "yes", "no")]) == 0.5


def _finben_root(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "pixiu"
    shutil.copytree(bundled_path("tasks") / "_samples" / "finben" / "fpb", root / name)
    (root / name / "fewshot.jsonl").unlink()
    return root


@pytest.mark.parametrize("name", ["FPB", "fpb", "flare-fpb", "flare_fpb"])
def test_finben_folders_are_found_under_pixiu_and_hub_names(tmp_path, name):
    spec = {"task": "flare_fpb", "family": "finben", "kind": "classification", "sample": "_samples/finben/fpb",
            "folder": "fpb", "hub": {"path": "TheFinAI/flare-fpb"}, "fewshot_pool": False}
    data = load_task(ecom=spec, finben_dir=str(_finben_root(tmp_path, name)))
    source = taskdata.DATA_SOURCES["flare_fpb"]
    assert len(data["test"]) == source["records_in_file"] == 40 and source["held_out_fewshot"] == 0


def test_headlines_without_label_type_is_an_error_naming_the_line(tmp_path):
    folder = tmp_path / "fin" / "headlines"
    folder.mkdir(parents=True)
    record = {"id": "h1", "query": "Price up?\nAnswer:", "answer": "Yes", "choices": ["Yes", "No"], "gold": 0}
    (folder / "test.jsonl").write_text(json.dumps({**record, "label_type": "price up"}) + "\n" + json.dumps(record) + "\n")
    spec = {"task": "flare_headlines", "family": "finben", "kind": "headlines", "sample": "_samples/finben/headlines",
            "folder": "headlines", "fewshot_pool": False}
    with pytest.raises(RecordError, match=r"test.jsonl:2: field 'label_type' is missing"):
        load_task(ecom=spec, finben_dir=str(tmp_path / "fin"))
    data = load_task(ecom=spec, finben_dir=str(tmp_path / "fin"), on_error="skip")
    assert len(data["test"]) == 1 and data["test"][0]["text"] == record["query"]  # FinBen has no text field
    assert taskdata.DATA_SOURCES["flare_headlines"]["skipped_records"] == 1


# ---------------------------------------------------------------- no silent loss


def test_zero_shot_tasks_score_every_record_and_counts_are_printed(tmp_path, capsys):
    shutil.copytree(PUBLIC_SAMPLES / "ZH-OpenBG_Align-CLS-item_align", tmp_path / "ZH-OpenBG_Align-CLS-item_align")
    spec = {"task": "ecominstruct_public_item_align", "family": "ecominstruct", "kind": "classification",
            "sample": "_samples/ecominstruct_public/ZH-OpenBG_Align-CLS-item_align",
            "folder": "ZH-OpenBG_Align-CLS-item_align", "answer_layout": "ecomgpt", "fewshot_pool": False}
    data = load_task(ecom=spec, ecominstruct_dir=str(tmp_path), max_docs=10)
    source = taskdata.DATA_SOURCES["ecominstruct_public_item_align"]
    assert (source["records_in_file"], source["held_out_fewshot"], source["capped"], source["documents"]) == (12, 0, 2, 10)
    assert len(data["test"]) == 10 and len(data["fewshot"]) == 0
    err = capsys.readouterr().err
    assert "12 records in" in err and "2 left out by the cap (max_docs=10" in err and "-> 10 documents scored" in err


def test_few_shot_tasks_say_how_many_they_hold_out(tmp_path, capsys):
    shutil.copytree(PUBLIC_SAMPLES / "ZH-MEPAVE-NER-attribute_value_extraction", tmp_path / "ZH-MEPAVE-NER-attribute_value_extraction")
    spec = {"task": "ecom_icl_ave", "family": "ecominstruct", "kind": "extraction", "sample": "_samples/ecominstruct/ave",
            "folder": "ZH-MEPAVE-NER-attribute_value_extraction"}
    load_task(ecom=spec, ecominstruct_dir=str(tmp_path))
    source = taskdata.DATA_SOURCES["ecom_icl_ave"]
    assert source["held_out_fewshot"] == 2 and source["documents"] == 10  # min(32, 12 // 5)
    assert "2 held out as the few-shot pool" in capsys.readouterr().err


def test_skipped_records_and_their_commonest_reason_are_printed(tmp_path, capsys):
    folder = tmp_path / "ZH-OpenBG_Align-CLS-item_align"
    shutil.copytree(PUBLIC_SAMPLES / folder.name, folder)
    with (folder / "test.json").open("a", encoding="utf-8") as fh:
        fh.write('{"sentences": "x"}\n{"sentences": "y"}\n')
    spec = {"task": "t", "family": "ecominstruct", "kind": "classification", "sample": "_samples/ecominstruct/pdc",
            "folder": folder.name, "fewshot_pool": False}
    load_task(ecom=spec, ecominstruct_dir=str(tmp_path), on_error="skip")
    source = taskdata.DATA_SOURCES["t"]
    assert (source["records_in_file"], source["skipped_records"], source["documents"]) == (14, 2, 12)
    assert "field 'labels' is missing (2x)" in capsys.readouterr().err


@pytest.mark.parametrize("value", [0, -1, "abc", 1.5])
def test_bad_max_docs_is_a_clear_error(value):
    spec = {"task": "t", "family": "ecominstruct", "kind": "classification", "sample": "_samples/ecominstruct/pdc"}
    with pytest.raises(UserError, match="max_docs must be an integer >= 1"):
        load_task(ecom=spec, max_docs=value)


def test_folders_key_remaps_any_family_and_the_old_key_still_works(tmp_path):
    root = _finben_root(tmp_path, "my_fpb")
    spec = {"task": "flare_fpb", "family": "finben", "kind": "classification", "sample": "_samples/finben/fpb",
            "folder": "fpb", "fewshot_pool": False}
    assert len(load_task(ecom=spec, finben_dir=str(root), folders={"flare_fpb": "my_fpb"})["test"]) == 40
    assert len(load_task(ecom=spec, finben_dir=str(root), ecominstruct_folders={"flare_fpb": "my_fpb"})["test"]) == 40
    with pytest.raises(UserError, match="must map task names to folder names"):
        load_task(ecom=spec, finben_dir=str(root), folders=["my_fpb"])


# ---------------------------------------------------------------- the commands


@pytest.mark.slow
def test_oracle_reaches_every_best_value_on_the_public_release_layout(tmp_path):
    out = tmp_path / "out"
    result = run_cli("eval", "--model", "ecom-oracle", "--tasks", "ecominstruct_public",
                     "--metadata", json.dumps({"ecominstruct_dir": str(PUBLIC_SAMPLES)}),
                     "--output_path", str(out), env={"ECOMHARNESS_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = out.rglob("results_*.json")
    results = json.loads(path.read_text())
    # EcomGPT's ROUGE-L (the `rouge` package) scores identical texts 2 / (2 + 1e-8).
    best = {"ambiguous": 0.0, "missing": 0.0, "rougeL_ecomgpt": 2 / (2 + 1e-8)}
    leaves = [t for t in results["results"] if t != "ecominstruct_public"]
    assert len(leaves) == 13
    for task in leaves:
        for key, value in results["results"][task].items():
            metric = key.split(",")[0]
            if isinstance(value, float) and not metric.endswith("_stderr") and metric != "alias":
                assert abs(value - best.get(metric, 1.0)) <= (1e-12 if metric == "rougeL_ecomgpt" else 0), \
                    (task, metric, value)
        source = results["ecomharness"]["data_sources"][task]
        assert source["origin"] == "explicit"
        assert source["documents"] == source["records_in_file"] == 12
    assert result.stderr.count("-> 12 documents scored") == 13


@pytest.mark.slow
def test_a_run_missing_folders_names_all_of_them_at_once(tmp_path):
    shutil.copytree(PUBLIC_SAMPLES / "ZH-OpenBG_Align-CLS-item_align", tmp_path / "ZH-OpenBG_Align-CLS-item_align")
    result = run_cli("eval", "--model", "ecom-empty", "--tasks", "ecominstruct_public",
                     "--metadata", json.dumps({"ecominstruct_dir": str(tmp_path)}), env={"ECOMHARNESS_OFFLINE": "1"})
    assert result.returncode == 2
    assert "12 task(s) have no folder in the data you gave" in result.stderr
    assert "ecominstruct_public_title_generate: no folder 'ZH-OpenBG_Align-Generate-title_generate'" in result.stderr


def _samples_file(tmp_path: Path, task: str, rows: list[dict]) -> Path:
    path = tmp_path / f"samples_{task}_2026-11-21T10-00-00.123456.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_score_takes_the_kind_from_the_task_not_an_empty_label_set(tmp_path):
    docs = read_ecominstruct(PUBLIC_SAMPLES / "ZH-OpenBG_Align-Generate-title_generate").docs
    rows = [{"doc_id": i, "doc": {k: v for k, v in d.items() if k != "kind"}, "target": d["target_text"],
             "filtered_resps": [d["target_text"]]} for i, d in enumerate(docs)]
    path = _samples_file(tmp_path, "ecominstruct_public_title_generate", rows)
    out = tmp_path / "s.json"
    result = run_cli("score", str(path), "--output", str(out))
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())[str(path)]
    assert scores["kind"] == "generation" and scores["kind_source"] == "task ecominstruct_public_title_generate"
    assert scores["metrics"]["rougeL"]["value"] == 1.0


def test_score_scores_a_mixed_file_per_kind_and_reports_a_guess(tmp_path):
    gen = read_ecominstruct(PUBLIC_SAMPLES / "ZH-OpenBG_Align-Generate-title_generate").docs[:3]
    clsd = read_ecominstruct(PUBLIC_SAMPLES / "ZH-OpenBG_Align-CLS-item_align").docs[:3]
    rows = [{"doc": d, "prediction": d["target_text"]} for d in gen + clsd]
    rows.append({"doc": {"target": "abc"}, "prediction": "abc"})
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "s.json"
    result = run_cli("score", str(path), "--output", str(out))
    assert result.returncode == 0, result.stderr
    groups = json.loads(out.read_text())[str(path)]["by_task_and_kind"]
    by_source = {(g["kind"], g["kind_source"]): g for g in groups}
    assert by_source[("generation", "document kind")]["metrics"]["score"]["value"] == 1.0
    assert by_source[("classification", "document kind")]["metrics"]["acc"]["value"] == 1.0
    assert ("generation", "guessed from document fields") in by_source
    assert "warning: no task or document kind says how to score these 1 documents" in result.stdout
