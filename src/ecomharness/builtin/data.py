"""Built-in plugin: the raw-corpus readers and the mixers of the data pipeline."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl


@hookimpl
def ecomharness_data_sources():
    """JSON Lines, Parquet, CSV, an HF dataset on disk, a hub dataset id."""
    return {name: f"ecomharness.data.sources:read_{name}" for name in ("jsonl", "parquet", "csv", "hf_disk", "hub")}


@hookimpl
def ecomharness_mixers():
    """EcomGPT-CT's graph mixing and the Separate baseline."""
    return {"graph": "ecomharness.data.mixers:graph", "separate": "ecomharness.data.mixers:separate"}
