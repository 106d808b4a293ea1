"""Expected values for the eCeLLM compat-metric tests, computed by eCeLLM's own script.

Not a test and not part of ecomharness: it runs ``evaluate.py`` of
github.com/ninglab/eCeLLM at f364c18f6cd7e1208c1ec75cb514c66cd84c0d2f on the fixed
outputs of ``ecellm_cases.json`` and writes what it computes into that file
(``expected``). Nothing of its code is copied here; it is imported from a checkout.

How the committed values were made (2026-12-06)::

    git --git-dir=ECELLM_MIRROR archive f364c18 evaluate.py | tar -x -C /tmp/ref/ecellm
    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install scikit-learn==1.9.1 numpy==2.4.6
    /tmp/refvenv/bin/python tests/reference/run_ecellm.py /tmp/ref/ecellm/evaluate.py \\
        tests/reference/ecellm_cases.json

The script's ``main(task, setting)`` is called as its command line calls it, in a scratch
folder holding the predictions where it reads them (``evaluation/TASK/SETTING.json``)
and, for ranking, the ESCI labels; ``datasets.load_dataset("NingLab/ECInstruct")`` is
answered with the set's gold records (there is no hub here) and ``fire`` is stubbed.
It prints its numbers rounded to three places, so the full values are read from its
local variables when ``main`` returns (``sys.setprofile``). Where it raises, the error
is recorded instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import types
from pathlib import Path

# The gold records load_dataset answers with (the script binds the function at import).
CURRENT: dict = {}
# The local variables of main() holding each task kind's numbers.
KEPT = ("acc", "f1_yes", "pre_yes", "rec_yes", "f1_macro", "skipped", "pred_skipped", "total_f1", "total_recall",
        "total_precision", "avg_ndcg")


def _run(module, case: dict) -> dict:
    records = [{"split": "test", "task": case["task"], "setting": case["setting"], "output": gold}
               for gold in case["gold"]]
    CURRENT["records"] = records
    with tempfile.TemporaryDirectory() as scratch:
        predictions = Path(scratch) / "evaluation" / case["task"] / f"{case['setting']}.json"
        predictions.parent.mkdir(parents=True)
        predictions.write_text(json.dumps(case["answers"]), encoding="utf-8")
        if "labels" in case:
            labels = Path(scratch) / "ECInstruct" / "Query_Product_Ranking" / "IND_Diverse_Instruction" / "label.json"
            labels.parent.mkdir(parents=True)
            labels.write_text(json.dumps(case["labels"]), encoding="utf-8")
        seen: dict = {}

        def profile(frame, event, arg):
            if event == "return" and frame.f_code is module.main.__code__:
                seen.update({k: v for k, v in frame.f_locals.items() if k in KEPT})

        here = os.getcwd()
        os.chdir(scratch)
        sys.setprofile(profile)
        try:
            module.main(task=case["task"], setting=case["setting"])
        except Exception as exc:  # the script's own failure is the expected result
            return {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            sys.setprofile(None)
            os.chdir(here)
    return {k: float(v) for k, v in seen.items()}


def main(script: str, cases_path: str) -> None:
    """Run eCeLLM's evaluation on every set of cases and write ``expected``."""
    sys.modules["fire"] = types.SimpleNamespace(Fire=None)
    sys.modules["datasets"] = types.SimpleNamespace(load_dataset=lambda name: {"train": CURRENT["records"]})
    spec = importlib.util.spec_from_file_location("ecellm_evaluate", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(cases_path, encoding="utf-8") as handle:
        data = json.load(handle)
    for case in data["sets"]:
        case["expected"] = _run(module, case)
    with open(cases_path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
