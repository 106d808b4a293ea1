"""What the ecom_icl YAML cannot say in Jinja: where each task's documents come from."""

from __future__ import annotations

import json
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "samples"


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_pdc(**metadata):
    """Product classification documents: the bundled sample, as test + fewshot splits."""
    import datasets

    folder = SAMPLES / "pdc"
    labels = json.loads((folder / "meta-info.json").read_text(encoding="utf-8"))["label_set"]["default"]

    def docs(name: str) -> datasets.Dataset:
        rows = [
            {"title": r["sentences"], "label": r["labels"]["default"][0], "choices": labels}
            for r in _read_jsonl(folder / name)
        ]
        return datasets.Dataset.from_list(rows)

    return datasets.DatasetDict({"test": docs("test.json"), "fewshot": docs("fewshot.json")})
