"""Expected values for the FLARE compat-metric tests, computed by the published code.

Not a test and not part of ecomharness: it runs, in a scratch environment, the FLARE
scoring of two published versions of ``src/tasks/flare.py`` on the fixed outputs of
``flare_cases.json`` and writes what they return into that file (``expected``):

- PIXIU 2023, the code behind the first FLARE tables: github.com/chancefocus/PIXIU at
  1fe354b361b4030caea74ee4d4ed9320e5814414;
- FinBen's current scorer: github.com/The-FinAI/PIXIU (FinBen's evaluation code) at
  da45ac467ca3a828621315881e33c68bca3bbb1f.

Nothing of their code is copied here; each ``flare.py`` is imported from a checkout.
How the committed values were made (2026-12-06)::

    git --git-dir=PIXIU_MIRROR archive 1fe354b src/tasks | tar -x -C /tmp/ref/pixiu2023
    git --git-dir=FINBEN_MIRROR archive da45ac4 src/tasks | tar -x -C /tmp/ref/finben
    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install scikit-learn==1.9.1 seqeval==1.2.2 numpy==2.4.6
    /tmp/refvenv/bin/python tests/reference/run_flare.py /tmp/ref/pixiu2023/src/tasks \\
        /tmp/ref/finben/src/tasks tests/reference/flare_cases.json

``flare.py`` imports lm-eval 0.3's ``lm_eval.base`` / ``lm_eval.metrics`` (only for its
Task base class and request factory, which scoring does not use) and, in FinBen's
version, model-based scorers (BARTScore, FactScore, evaluate) for other tasks: stubs
stand in for those imports only. The package ``__init__`` is not run.
"""

from __future__ import annotations

import importlib
import json
import sys
import types


def _stub_imports() -> None:
    base = types.ModuleType("lm_eval.base")

    class Task:  # flare.py's tasks only subclass it
        pass

    base.Task, base.MultipleChoiceTask, base.rf = Task, Task, None
    metrics = types.ModuleType("lm_eval.metrics")
    for name in ("mean", "matthews_corrcoef", "bleu", "chrf", "ter"):
        setattr(metrics, name, None)
    sys.modules.update({"lm_eval": types.ModuleType("lm_eval"), "lm_eval.base": base, "lm_eval.metrics": metrics})
    for name in ("bart_score", "evaluate", "factscore_package", "factscore_package.factscorer"):
        module = types.ModuleType(name)
        module.BARTScorer = module.FactScorer = None
        sys.modules[name] = module


def _load(package: str, directory: str):
    """``flare.py`` of one checkout, imported as ``package.flare`` without its ``__init__``."""
    module = types.ModuleType(package)
    module.__path__ = [directory]
    sys.modules[package] = module
    return importlib.import_module(f"{package}.flare")


def _classification(flare, cases: list[dict]) -> dict:
    task = flare.FPB()
    per_doc = [task.process_results({"choices": c["choices"], "gold": c["gold"]}, [c["answer"]]) for c in cases]
    return {"acc": [float(r["acc"]) for r in per_doc], "missing": [int(r["missing"]) for r in per_doc],
            "f1": float(task.weighted_f1([r["f1"] for r in per_doc]))}


def _headlines(flare, cases: list[dict]) -> dict:
    task = flare.Headlines()
    items = [task.process_results({"label_type": c["label_type"], "gold": c["gold"]}, [c["answer"]])["avg_f1"]
             for c in cases]
    return {"pred": [int(item[1]) for item in items], "avg_f1": float(flare.Headlines.label_avg(items))}


def _ner(flare, cases: list[dict]) -> dict:
    items = [flare.NER().process_results({"text": c["text"], "label": c["label"]}, [c["answer"]])["entity_f1"]
             for c in cases]
    return {"tags": [list(item[0]) for item in items], "entity_f1": float(flare.NER.entity_f1(items))}


def main(pixiu_dir: str, finben_dir: str, cases_path: str) -> None:
    """Run both versions' scoring on every set of cases and write ``expected``."""
    _stub_imports()
    versions = {"pixiu": _load("pixiu2023_tasks", pixiu_dir), "finben": _load("finben_tasks", finben_dir)}
    with open(cases_path, encoding="utf-8") as handle:
        data = json.load(handle)
    expected: dict = {}
    for name, flare in versions.items():
        expected[name] = {
            "classification": {key: _classification(flare, cases) for key, cases in data["classification"].items()},
            "headlines": {key: _headlines(flare, cases) for key, cases in data["headlines"].items()},
            "ner": {key: _ner(flare, cases) for key, cases in data["ner"].items()},
        }
    data["expected"] = expected
    with open(cases_path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
