"""Task data resolution: explicit location > hub > bundled sample, caps and few-shot."""

from __future__ import annotations

import json

import pytest

import ecomharness.tasks.data as taskdata
from ecomharness.errors import UserError
from ecomharness.tasks.data import load_task

AVE = {"task": "ecom_icl_ave", "family": "ecominstruct", "kind": "extraction",
       "sample": "_samples/ecominstruct/ave", "folder": "MY-AVE-folder"}
AGNEWS = {"task": "general_icl_agnews", "family": "general", "kind": "classification",
          "sample": "_samples/general/agnews", "folder": "agnews", "converter": "agnews",
          "hub": {"path": "fancyzhx/ag_news", "test_split": "test", "fewshot_split": "train"},
          "label_names": ["World", "Sports", "Business", "Sci/Tech"]}


pytestmark = pytest.mark.usefixtures("offline_task_data")


def _ave_folder(root, n):
    folder = root / "MY-AVE-folder"
    folder.mkdir(parents=True)
    meta = {"task": "X-AVE", "label_set": {"default": ["颜色"]}, "label_key": "default"}
    (folder / "meta-info.json").write_text(json.dumps(meta, ensure_ascii=False))
    rows = [{"sentences": f"红色{i}号", "spans": [{"start": 0, "end": 2, "type": "颜色", "term": "红色"}]}
            for i in range(n)]
    (folder / "test.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    return folder


def test_bundled_sample_is_the_last_resort(caplog):
    data = load_task(ecom=AVE, version=1.0)
    assert len(data["test"]) == 40 and len(data["fewshot"]) == 16
    source = taskdata.DATA_SOURCES["ecom_icl_ave"]
    assert source["origin"] == "bundled" and "NOT benchmark scores" in caplog.text


def test_explicit_directory_wins_and_few_shot_is_held_out(tmp_path):
    _ave_folder(tmp_path, 100)
    data = load_task(ecom=AVE, ecominstruct_dir=str(tmp_path))
    test, fewshot = list(data["test"]), list(data["fewshot"])
    assert len(fewshot) == 20 and len(test) == 80  # min(32, 100 // 5) held out
    assert not {d["text"] for d in test} & {d["text"] for d in fewshot}
    assert taskdata.DATA_SOURCES["ecom_icl_ave"]["origin"] == "explicit"
    again = load_task(ecom=AVE, ecominstruct_dir=str(tmp_path))
    assert list(again["test"]) == test  # seeded


def test_environment_variable_and_folder_mapping(tmp_path, monkeypatch):
    folder = _ave_folder(tmp_path, 10)
    folder.rename(tmp_path / "Renamed")
    monkeypatch.setenv("ECOMHARNESS_ECOMINSTRUCT_DIR", str(tmp_path))
    with pytest.raises(UserError, match="no folder 'MY-AVE-folder'"):
        load_task(ecom=AVE)
    data = load_task(ecom=AVE, ecominstruct_folders={"ecom_icl_ave": "Renamed"})
    assert len(data["test"]) + len(data["fewshot"]) == 10


def test_explicit_location_that_is_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        load_task(ecom=AVE, ecominstruct_dir=str(tmp_path / "nope"))


def test_cap_is_deterministic_and_recorded(tmp_path):
    _ave_folder(tmp_path, 300)
    first = list(load_task(ecom=AVE, ecominstruct_dir=str(tmp_path), max_docs=50)["test"])
    second = list(load_task(ecom=AVE, ecominstruct_dir=str(tmp_path), max_docs=50)["test"])
    assert len(first) == 50 and first == second
    source = taskdata.DATA_SOURCES["ecom_icl_ave"]
    assert (source["documents"], source["documents_available"], source["max_docs"]) == (50, 268, 50)


def test_hub_dataset_is_used_when_reachable(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"])})
    calls = []

    def fake_load(path, name=None, split=None):
        calls.append((path, name, split))
        rows = {"text": ["Team wins cup", "Bank raises rates", "No label"], "label": [1, 2, 0]}
        return datasets.Dataset.from_dict(rows, features=features)

    monkeypatch.setattr(taskdata, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_task(ecom=AGNEWS)
    assert calls == [("fancyzhx/ag_news", None, "test"), ("fancyzhx/ag_news", None, "train")]
    assert [d["target"] for d in data["test"]] == ["Sports", "Business", "World"]
    assert taskdata.DATA_SOURCES["general_icl_agnews"]["origin"] == "hub"


def test_unreachable_hub_falls_back_without_waiting(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("hub must not be tried"))
    load_task(ecom=AGNEWS)
    assert taskdata.DATA_SOURCES["general_icl_agnews"]["origin"] == "bundled"


def test_bad_records_in_real_data_are_reported_or_skipped_and_counted(tmp_path):
    folder = _ave_folder(tmp_path, 30)
    with (folder / "test.json").open("a", encoding="utf-8") as fh:
        fh.write('\n{"sentences": "蓝色", "spans": [{"start": 0, "end": 9, "type": "颜色"}]}\n')
    with pytest.raises(UserError, match="test.json:31: field 'spans\\[0\\].term'"):
        load_task(ecom=AVE, ecominstruct_dir=str(tmp_path))
    load_task(ecom=AVE, ecominstruct_dir=str(tmp_path), on_error="skip")
    assert taskdata.DATA_SOURCES["ecom_icl_ave"]["skipped_records"] == 1


def test_spec_is_validated():
    with pytest.raises(UserError, match="unknown metadata.ecom key"):
        load_task(ecom={**AVE, "fodler": "x"})
    with pytest.raises(UserError, match="family must be one of"):
        load_task(ecom={**AVE, "family": "web"})
    with pytest.raises(UserError, match="needs an 'ecom' mapping"):
        load_task(version=1.0)
