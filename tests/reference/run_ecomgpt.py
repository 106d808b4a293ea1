"""Expected values for the EcomGPT compat-metric tests, computed by EcomGPT's own scorers.

Not a test and not part of ecomharness: it runs the scorer classes of
github.com/Alibaba-NLP/EcomGPT at eaa846f25bfb899dd1dee22e15cc8b288f11c239 (``src/data/
task_cls.py`` and ``src/data/task_extract.py``, as ``src/eval.py`` calls them) on the
fixed outputs of ``ecomgpt_cases.json`` and writes what they compute into that file
(``expected``). Nothing of its code is copied here; it is imported from a checkout.

How the committed values were made (2026-12-06)::

    git --git-dir=ECOMGPT_MIRROR archive eaa846f src | tar -x -C /tmp/eg
    python3 -m venv /tmp/egvenv
    /tmp/egvenv/bin/pip install rouge==1.0.1 seqeval==1.2.2 numpy==2.4.6 scikit-learn==1.9.1 tqdm==4.70.1
    PYTHONHASHSEED=0 /tmp/egvenv/bin/python tests/reference/run_ecomgpt.py /tmp/eg/src \\
        tests/reference/ecomgpt_cases.json

For each set, as ``eval()`` in ``src/eval.py`` does: a folder named as the release's
(its kind segment picks the class: CLS, NER, Condition_Extract, Extract, Generate) holds
the set's ``meta-info.json`` and ``test.json``; the class is built on it; each record
gets ``prompt`` and ``answer`` from ``next(task.encode_to_input_output(record, args))``;
then ``task.evaluate(records, answers)`` returns the key scores (micro-f1, macro-f1,
rouge-l-f1). Unlike ``eval()``, every record is scored, not the first five. The gold
answers the class built are recorded too. Where ``evaluate`` raises (or exits), the
error is recorded, and the set is scored again with the answers listed in
``unscorable`` replaced by ``error`` (``substituted``), the code's own word for an
empty answer, which is what the compat metrics score in their place.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import random
import sys
import tempfile
import types
from pathlib import Path

# src/eval.py's map from a folder name's kind segment to the scorer class.
CLASSES = {"CLS": "EN_CLS", "Extract": "EN_EXTRACT", "Generate": "EN_GEN", "Condition_Extract": "EN_CONDITION_EXTRACT",
           "NER": "EN_NER"}


def _number(value) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else repr(value)  # JSON has no NaN


def _evaluate(modules: list, case: dict, answers: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / case["folder"]
        folder.mkdir()
        (folder / "meta-info.json").write_text(json.dumps(case["meta"], ensure_ascii=False), encoding="utf-8")
        (folder / "test.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in case["records"]),
                                          encoding="utf-8")
        name = CLASSES[case["folder"].split("-")[2]]
        cls = next(getattr(m, name) for m in modules if hasattr(m, name))
        args = types.SimpleNamespace()
        random.seed(42)  # the prompts' label order only; answers do not depend on it
        with contextlib.redirect_stdout(io.StringIO()):
            task = cls(str(folder), args)
            records = modules[0].load_data(str(folder / "test.json"))
            for record in records:
                prompt, answer = next(task.encode_to_input_output(record, args))
                record["prompt"], record["answer"] = prompt, answer
            gold = [record["answer"] for record in records]
            try:
                _, key = task.evaluate(records, list(answers))
            except (Exception, SystemExit) as exc:  # the code's own failure is the expected result
                return {"error": f"{type(exc).__name__}: {exc}", "gold_answers": gold}
    return {**{k: _number(v) for k, v in key.items()}, "gold_answers": gold}


def main(src: str, cases_path: str) -> None:
    """Run EcomGPT's scorers on every set of cases and write ``expected``."""
    sys.path.insert(0, src)
    os.chdir(src)
    cls_module = importlib.import_module("data.task_cls")
    extract_module = importlib.import_module("data.task_extract")
    utils = importlib.import_module("data.utils")
    modules = [utils, cls_module, extract_module]
    with open(cases_path, encoding="utf-8") as handle:
        data = json.load(handle)
    for case in data["sets"]:
        expected = _evaluate(modules, case, case["answers"])
        if "error" in expected and case.get("unscorable"):
            answers = ["error" if i in case["unscorable"] else a for i, a in enumerate(case["answers"])]
            expected["substituted"] = _evaluate(modules, case, answers)
        case["expected"] = expected
    with open(cases_path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
