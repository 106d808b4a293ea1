"""FinBen / FLARE scores: sentiment (FPB, FiQA-SA), Headlines, NER.

FPB and FiQA-SA are single-label classification: accuracy, macro and weighted F1, and
the missing rate (``ecomharness.metrics.classification``). Headlines asks a yes/no
question per ``label_type``; its score is the mean over label types of the weighted F1
within each type. NER is scored at the entity level with seqeval semantics
(``ecomharness.metrics.extraction.ner_item``).
"""

from __future__ import annotations

from collections import defaultdict

from ecomharness.metrics.classification import ClsItem, weighted_f1


def headlines_avg_f1(items: list[tuple[str, ClsItem]]) -> float:
    """Mean over label types of the weighted F1 of the answers of that type."""
    by_type: dict[str, list[ClsItem]] = defaultdict(list)
    for label_type, item in items:
        by_type[label_type].append(item)
    if not by_type:
        return 0.0
    return sum(weighted_f1(group) for group in by_type.values()) / len(by_type)
