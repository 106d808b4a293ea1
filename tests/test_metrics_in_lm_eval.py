"""Our metrics as lm-eval sees them: from task YAML, by `!function` and by registered name,
checked end to end with the ecom-oracle and ecom-empty reference models."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

LOADER = '''
import datasets

def load(**kw):
    labels = ["服装", "食品", "Electronics"]
    rows = [
        {"text": "红色T恤", "target": ["服装"], "target_text": "服装", "label_set": labels},
        {"text": "坚果礼盒", "target": ["食品"], "target_text": "食品", "label_set": labels},
        {"text": "USB cable", "target": ["Electronics"], "target_text": "Electronics", "label_set": labels},
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
'''

CLS_TASK = """task: probe_cls
custom_dataset: !function probe_loader.load
test_split: test
output_type: generate_until
doc_to_text: "{{text}}\\n类别："
doc_to_target: "{{target_text}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n"]
process_results: !function ecomharness.metrics.lmeval.process_classification
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
  - {metric: macro_f1, aggregation: cls_macro_f1, higher_is_better: true}
  - {metric: weighted_f1, aggregation: !function ecomharness.metrics.lmeval.cls_weighted_f1, higher_is_better: true}
  - {metric: missing, aggregation: mean, higher_is_better: false}
  - {metric: rougeL, aggregation: mean, higher_is_better: true}
metadata:
  version: 1.0
"""

GEN_TASK = """task: probe_gen
custom_dataset: !function probe_loader.load
test_split: test
output_type: generate_until
doc_to_text: "{{text}}\\n"
doc_to_target: "{{target_text}}"
generation_kwargs:
  until: ["\\n"]
metric_list:
  - {metric: rougeL_zh}
  - {metric: rouge1_zh}
metadata:
  version: 1.0
"""


@pytest.fixture()
def probe_dir(tmp_path):
    (tmp_path / "probe_loader.py").write_text(LOADER, encoding="utf-8")
    (tmp_path / "probe_cls.yaml").write_text(CLS_TASK, encoding="utf-8")
    (tmp_path / "probe_gen.yaml").write_text(GEN_TASK, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("model, best", [("ecom-oracle", True), ("ecom-empty", False)])
def test_yaml_metrics_reach_their_bounds(probe_dir, tmp_path, model, best):
    out = tmp_path / "out"
    result = run_cli(
        "eval", "--model", model, "--tasks", "probe_cls,probe_gen",
        "--include_path", str(probe_dir), "--output_path", str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = list(out.rglob("results_*.json"))
    results = json.loads(path.read_text())["results"]
    top, bottom = (1.0, 0.0) if best else (0.0, 1.0)
    cls = results["probe_cls"]
    for metric in ("acc", "macro_f1", "weighted_f1", "rougeL"):
        assert cls[f"{metric},none"] == top, metric
    assert cls["missing,none"] == bottom
    gen = results["probe_gen"]
    assert gen["rougeL_zh,none"] == top and gen["rouge1_zh,none"] == top
