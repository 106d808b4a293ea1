"""Fault injection: bad values in recipes and flags are named errors (issue 15, low items)."""

from __future__ import annotations

import pytest

from ecomharness.cli import main
from ecomharness.data.recipe import parse_recipe as parse_data_recipe
from ecomharness.errors import UserError
from ecomharness.train.recipe import parse_recipe

BASE = {"run_dir": "r", "model": {"init": {"architecture": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 4}},
        "tokenizer": "t", "data": {"path": "d"}, "eval": {"tasks": ["ecom_icl"]}}


def _with(section, **values):
    return {**BASE, section: {**BASE.get(section, {}), **values}}


@pytest.mark.parametrize("raw, message", [
    (_with("training", per_device_train_batch_size=0), "per_device_train_batch_size: must be at least 1"),
    (_with("training", max_steps=0), "max_steps: must be at least 1"),
    (_with("training", learning_rate=-0.1), "learning_rate: must be at least 0"),
    (_with("training", learning_rate=float("nan")), "learning_rate: expected a finite number"),
    (_with("eval", limit=-5), "eval.limit: must be at least 1"),
    (_with("eval", tasks=5), "eval.tasks: expected a list"),
    (_with("eval", on_start="yes"), "eval.on_start: expected true or false"),
    ({**BASE, "model": {"init": {"architecture": "bloom", "hidden_size": 64, "n_head": 5}}},
     "hidden_size 64 is not divisible by the 5 attention heads"),
    ({**BASE, "model": {"init": {"architecture": "bloom", "hidden_size": 0}}}, "hidden_size: must be at least 1"),
])
def test_training_recipe_values_are_validated(raw, message):
    with pytest.raises(UserError, match=message):
        parse_recipe(raw)


def test_eval_tasks_as_a_string_is_a_list_of_names_not_characters():
    recipe = parse_recipe(_with("eval", tasks="ecom_icl,general_icl"))
    assert recipe.eval.inline.tasks == ("ecom_icl", "general_icl")


def test_data_recipe_seq_len_has_an_upper_bound():
    with pytest.raises(UserError, match="seq_len: must be between 8 and"):
        parse_data_recipe({"output": "o", "tokenizer": "t", "seq_len": 10**9,
                           "sources": [{"name": "a", "path": "a.jsonl", "format": "jsonl", "kind": "domain", "language": "zh",
                                        "template": "{{ t }}"}]})


@pytest.mark.parametrize("metadata", ['{bad', '{"max_docs": 0}', '{"max_docs": "abc"}', '{"data_seed": -1}'])
def test_bad_metadata_is_exit_2(metadata, capsys):
    code = main(["eval", "--model", "ecom-oracle", "--tasks", "ecom_icl_pdc", "--metadata", metadata])
    assert code == 2, capsys.readouterr().err


def test_a_non_utf8_training_recipe_is_named(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"run_dir: r\nmodel: {path: m\xff}\n")
    assert main(["train", str(recipe)]) == 2
    assert "r.yaml:2: not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("meta, message", [
    ({"task": 5}, "field .task. must be a string"),
    ({"task": "CLS", "label_set": {"default": "abc"}}, "field .label_set.default. must be a list of strings"),
])
def test_meta_info_field_types_are_named(tmp_path, meta, message):
    import json

    from ecomharness.formats.ecominstruct import read_ecominstruct

    folder = tmp_path / "EN-x-CLS-y"
    folder.mkdir()
    (folder / "meta-info.json").write_text(json.dumps(meta))
    (folder / "test.json").write_text("[]")
    with pytest.raises(UserError, match=message):
        read_ecominstruct(folder)
