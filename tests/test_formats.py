"""Record formats: real files read completely; bad records are named by file, line, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError
from ecomharness.formats.ecominstruct import kind_from_task_name, read_ecominstruct
from ecomharness.formats.finben import read_finben
from ecomharness.formats.jsonl import read_jsonl_documents
from ecomharness.metrics import lmeval
from ecomharness.registry import record_formats
from tests.conftest import SHARED_DATA

ECOM = SHARED_DATA / "ecominstruct"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")


def _folder(tmp_path: Path, records: list, meta: dict | None = None) -> Path:
    meta = meta or {
        "task": "ZH-TEST-NER-attribute",
        "label_set": {"cn": ["颜色", "领型"]},
        "label_key": "cn",
        "label_sep": ", ",
        "test_prompt": {"instruction": "{sentences}\n抽取：{label_set}"},
    }
    (tmp_path / "meta-info.json").write_text(json.dumps(meta, ensure_ascii=False))
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    (tmp_path / "test.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


GOOD = {"sentences": "红色圆领T恤", "spans": [{"start": 0, "end": 2, "type": "颜色", "term": "红色"}]}


def test_registry_lists_builtin_formats_and_suggests_names():
    assert {"ecominstruct", "finben", "jsonl"} <= set(record_formats.names())
    assert record_formats.plugin_of("finben") == "ecom_formats"
    with pytest.raises(UserError, match="did you mean finben"):
        record_formats.get("finbem")


def test_ecominstruct_extraction_document(tmp_path):
    result = read_ecominstruct(_folder(tmp_path, [GOOD]))
    [doc] = result.docs
    assert doc["gold_spans"] == [["颜色", "红色"]]
    assert doc["target_text"] == "颜色: 红色\n领型: None"  # EcomGPT's layout: every type
    compact = read_ecominstruct(tmp_path, answer_layout="compact").docs[0]
    assert compact["target_text"] == "颜色: 红色"
    assert doc["instruction"] == "红色圆领T恤\n抽取：颜色, 领型"
    assert len(result.fingerprint) == 16 and result.meta["kind"] == "extraction"


@pytest.mark.parametrize(
    "record, line_field, reason",
    [
        ('{"sentences": "x", ', (2, None), "invalid JSON"),
        ({"spans": []}, (2, "sentences"), "is missing"),
        ({"sentences": 5, "spans": []}, (2, "sentences"), "must be str"),
        ({"sentences": "红色", "spans": [{"start": 0, "end": 2, "type": "颜色"}]},
         (2, "spans[0].term"), "must be a non-empty string"),
        ({"sentences": "红色", "spans": [{"start": 0, "end": 2, "term": "红色"}]},
         (2, "spans[0].type"), "typed extraction needs a type"),
        ({"sentences": "红色", "spans": [{"start": 0, "end": 2, "type": "尺码", "term": "红色"}]},
         (2, "spans[0].type"), "unknown label"),
    ],
)
def test_ecominstruct_bad_records_name_file_line_field(tmp_path, record, line_field, reason):
    folder = _folder(tmp_path, [GOOD, record])
    with pytest.raises(RecordError) as info:
        read_ecominstruct(folder)
    err = info.value
    assert err.path.name == "test.json" and (err.line, err.field) == line_field
    assert reason in err.reason and f"test.json:{line_field[0]}:" in str(err)
    skipped = read_ecominstruct(folder, on_error="skip")
    assert len(skipped.docs) == 1 and len(skipped.skipped) == 1
    assert skipped.skipped_summary()["skipped"] == 1


def test_ecominstruct_classification_unknown_label(tmp_path):
    meta = {"task": "EN-X-CLS-topic", "label_set": {"default": ["Food", "Price"]}, "label_key": "default"}
    folder = _folder(tmp_path, [{"sentences": "ok", "labels": {"default": ["Taste"]}}], meta)
    with pytest.raises(RecordError, match=r"test.json:1: field 'labels.default' unknown label 'Taste'"):
        read_ecominstruct(folder)


def test_invalid_utf8_is_reported(tmp_path):
    folder = _folder(tmp_path, [GOOD])
    with (folder / "test.json").open("ab") as fh:
        fh.write(b'{"sentences": "\xff\xfe"}\n')
    with pytest.raises(RecordError, match="test.json:2: invalid UTF-8"):
        read_ecominstruct(folder)


def test_missing_folder_and_bad_on_error(tmp_path):
    with pytest.raises(UserError, match="no meta-info.json"):
        read_ecominstruct(tmp_path)
    with pytest.raises(UserError, match="on_error"):
        read_ecominstruct(_folder(tmp_path, [GOOD]), on_error="ignore")


def test_kind_from_task_name():
    assert kind_from_task_name("EN-ABSA-CLS-review_topic_category") == "classification"
    assert kind_from_task_name("ZH-JAVE-Condition_Extract-attribute_value_detection") == "extraction"
    assert kind_from_task_name("ZH-TIG-GEN-title_generation") == "generation"


def test_finben_checks(tmp_path):
    path = tmp_path / "x.jsonl"
    good = {"id": "a", "query": "q", "answer": "Positive", "text": "t", "choices": ["negative", "positive"], "gold": 1}
    rows = [good, {**good, "gold": 5}, {**good, "answer": "Negative"},
            {"id": "n", "query": "q", "answer": "", "text": "Tim Cook", "label": ["B-PER"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = read_finben(path, on_error="skip")
    assert [d["id"] for d in result.docs] == ["a"]
    reasons = [str(e) for e in result.skipped]
    assert "x.jsonl:2: field 'gold' 5 is not an index" in reasons[0]
    assert "field 'answer'" in reasons[1]
    assert "1 BIO tags for 2 words" in reasons[2]


def test_jsonl_field_mapping(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"title": "红色T恤", "cat": "服装", "extra": 1}\n{"cat": "食品"}\n')
    with pytest.raises(RecordError, match="p.jsonl:2: field 'title' is missing"):
        read_jsonl_documents(path, fields={"text": "title", "target": "cat"}, required=["text", "target"])
    result = read_jsonl_documents(path, fields={"text": "title", "target": "cat"}, on_error="skip", required=["text"])
    assert result.docs == [{"text": "红色T恤", "target": "服装", "extra": 1}]


# ---------------------------------------------------------------- real data: gold is max, empty is 0


def _score(process, docs, answers):
    return [process(doc, [answer]) for doc, answer in zip(docs, answers)]


@needs_shared
def test_real_ecominstruct_classification_gold_and_empty():
    result = read_ecominstruct(ECOM / "EN-ABSA-CLS-review_topic_category")
    assert len(result.docs) == 500 and not result.skipped
    for answers, expected in ((lambda d: d["target_text"], 1.0), (lambda d: "", 0.0)):
        rows = _score(lmeval.process_classification, result.docs, [answers(d) for d in result.docs])
        acc = sum(r["acc"] for r in rows) / len(rows)
        assert acc == expected
        assert lmeval.cls_macro_f1([r["macro_f1"] for r in rows]) == expected
        assert lmeval.cls_weighted_f1([r["weighted_f1"] for r in rows]) == expected
        assert sum(r["missing"] for r in rows) / len(rows) == 1.0 - expected
        assert sum(r["rougeL"] for r in rows) / len(rows) == expected


@needs_shared
def test_real_ecominstruct_extraction_gold_and_empty():
    result = read_ecominstruct(ECOM / "ZH-MEPAVE-NER-attribute_value_extraction")
    assert len(result.docs) == 500 and not result.skipped
    for answers, expected in ((lambda d: d["target_text"], 1.0), (lambda d: "", 0.0)):
        rows = _score(lmeval.process_extraction, result.docs, [answers(d) for d in result.docs])
        for agg, key in ((lmeval.ie_precision, "precision"), (lmeval.ie_recall, "recall"), (lmeval.ie_f1, "f1")):
            assert agg([r[key] for r in rows]) == expected
        assert sum(r["rougeL"] for r in rows) / len(rows) == expected


@needs_shared
def test_real_finben_fiqasa_gold_and_empty():
    result = read_finben(SHARED_DATA / "finben" / "fiqasa" / "valid.jsonl")
    assert len(result.docs) == 186 and not result.skipped
    for answers, expected in ((lambda d: d["target_text"], 1.0), (lambda d: "", 0.0)):
        rows = _score(lmeval.process_classification, result.docs, [answers(d) for d in result.docs])
        assert sum(r["acc"] for r in rows) / len(rows) == expected
        assert lmeval.cls_macro_f1([r["macro_f1"] for r in rows]) == expected
        assert lmeval.cls_weighted_f1([r["weighted_f1"] for r in rows]) == expected


def test_process_functions_on_constructed_docs():
    gen = lmeval.process_generation({"target": "红色连衣裙"}, ["红色连衣裙"])
    assert gen == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "score": 1.0}
    rc = lmeval.process_reading({"answers": []}, [""])
    assert rc == {"score": 1.0, "exact_match": 1.0, "f1": 1.0, "rougeL": 1.0}
    doc = {"tokens": ["Tim", "Cook"], "bio_labels": ["B-PER", "I-PER"]}
    row = lmeval.process_ner(doc, ["Tim Cook, PER"])["entity_f1"]
    assert lmeval.ie_f1([row]) == 1.0
    head = lmeval.process_headlines({"target": "Yes", "label_set": ["Yes", "No"], "label_type": "up"}, ["No"])
    assert head["acc"] == 0.0 and lmeval.headlines_avg_f1([head["avg_f1"]]) == 0.0
    assert lmeval.rougeL_zh(["红色"], ["红色"]) == 1.0


def test_jsonl_byte_ranges_read_every_line_once_with_its_whole_file_number(tmp_path):
    """The Ray engine's read pieces: ranges that tile a file give exactly the whole
    file's records and errors, numbered as in the whole file, wherever the cuts fall."""
    import random

    from ecomharness.formats.common import RecordError, iter_jsonl

    rng = random.Random(1)
    lines = []
    for i in range(300):
        roll = rng.random()
        lines.append("" if roll < 0.1 else "{oops" if roll < 0.15 else
                     json.dumps({"i": i, "t": "é" * rng.randint(0, 40)}, ensure_ascii=False))
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")  # no newline after the last line

    def read(start=0, end=None):
        return [(n, str(r) if isinstance(r, RecordError) else r) for n, r in iter_jsonl(path, start, end)]

    whole = read()
    size = path.stat().st_size
    for pieces in (2, 3, 7, 64, size):
        cuts = [size * k // pieces for k in range(pieces + 1)]
        assert [x for a, b in zip(cuts, cuts[1:]) for x in read(a, b)] == whole, pieces
