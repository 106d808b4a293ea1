"""Ledger checkpoint names that are not trained saves.

``init`` is the starting model; ``average-last-N`` a weight average of a run's last N
saves (train/average.py). ``last``, ``best`` and checkpoint noise read trained saves
only. A module of its own so that the ledger and the noise measures both read it
without importing each other.
"""

from __future__ import annotations

INIT = "init"
AVERAGE_PREFIX = "average-last-"


def is_trained(checkpoint: str) -> bool:
    """Whether a ledger checkpoint name is a trained save (not ``init``, not an average)."""
    return checkpoint != INIT and not checkpoint.startswith(AVERAGE_PREFIX)
