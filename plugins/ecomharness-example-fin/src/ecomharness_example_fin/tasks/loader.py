"""Documents of ``example_fin_sentiment``: the JSON Lines file beside this module."""

import json
from pathlib import Path


def load(**metadata):
    """Return the test split; ``metadata`` (from ``--metadata``) is not used."""
    import datasets

    path = Path(__file__).resolve().parent / "sentiment.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
