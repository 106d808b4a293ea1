"""Built-in plugin: readers for the public data formats the tasks read."""

from __future__ import annotations

from ecomharness.hookspecs import hookimpl


@hookimpl
def ecomharness_record_formats():
    """EcomInstruct, FinBen and plain JSON Lines readers, imported on first use."""
    return {
        "ecominstruct": "ecomharness.formats.ecominstruct:read_ecominstruct",
        "finben": "ecomharness.formats.finben:read_finben",
        "jsonl": "ecomharness.formats.jsonl:read_jsonl_documents",
    }
