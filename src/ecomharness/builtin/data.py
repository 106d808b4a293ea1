"""Built-in plugin: the raw-corpus readers and the mixers of the data pipeline."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl


@hookimpl
def ecomharness_data_sources():
    """JSON Lines, Parquet, CSV, an HF dataset on disk, a hub dataset id; EcomInstruct
    folders rendered as instruction-format text (for Mix-CPT's knowledge mixture)."""
    names = ("jsonl", "parquet", "csv", "hf_disk", "hub", "ecominstruct_sft")
    return {name: f"ecomharness.data.sources:read_{name}" for name in names}


@hookimpl
def ecomharness_filters():
    """Length, Gopher-style repetition, character classes, required fields, script share."""
    names = ("length", "repetition", "characters", "required_fields", "script")
    return {name: f"ecomharness.data.filters:{name}" for name in names}


@hookimpl
def ecomharness_mixers():
    """EcomGPT-CT's graph mixing, the Separate baseline, Mix-CPT's knowledge mixture."""
    return {"graph": "ecomharness.data.mixers:graph", "separate": "ecomharness.data.mixers:separate",
            "knowledge_mixture": "ecomharness.data.mixers:knowledge_mixture"}


@hookimpl
def ecomharness_selectors():
    """Efficient-CPT's scorers: task similarity (ETS-DACP), novelty and diversity (ETA-DACP)."""
    return {name: f"ecomharness.select.scorers:{name}" for name in ("similarity", "perplexity", "pos_entropy")}


@hookimpl
def ecomharness_topic_classifiers():
    """Keyword topics, for corpora whose records carry no topic field."""
    return {"keywords": "ecomharness.select.topics:keyword_classifier"}
