"""Topic-balanced selection (Llama-3-SynE's topic-based mixing).

    select:
      balance:
        field: category               # the topic is this record field ...
        # classifier: keywords        # ... or a topic classifier plugin's answer
        # options: {topics: {apparel: [裙, shirt], bags: [包, backpack]}}
        weights: {apparel: 2}         # target shares (default: equal; unnamed topics 1)

The selection budget (``sampling.k`` or ``fraction``) is split across topics by weight;
a topic with fewer records than its share gives all of them and the rest is shared out
again among the others (water-filling), so the budget is met whenever the corpus allows.
Inside a topic, documents are chosen by the combined score as usual (hard or soft).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecomharness.errors import UserError
from ecomharness.registry import topic_classifiers
from ecomharness.select.choose import choose
from ecomharness.util import reject_unknown_keys

MISSING = "(none)"


def allocate(sizes: dict[str, int], k: int, weights: dict[str, float] | None = None) -> dict[str, int]:
    """Split ``k`` across topics in proportion to ``weights``, never more than a topic has.

    Topics that run out give their remainder to the others; integer shares are settled
    by the largest fractional parts (ties by topic name), so the result is deterministic
    and sums to ``min(k, total)``.
    """
    weights = weights or {}
    given = {t: 0 for t in sizes}
    open_topics = {t for t, n in sizes.items() if n > 0 and weights.get(t, 1.0) > 0}
    remaining = min(k, sum(sizes[t] for t in open_topics))
    while remaining > 0 and open_topics:
        total = sum(weights.get(t, 1.0) for t in open_topics)
        share = {t: remaining * weights.get(t, 1.0) / total for t in open_topics}
        full = {t for t in open_topics if sizes[t] - given[t] <= share[t]}
        if full:
            for t in full:
                remaining -= sizes[t] - given[t]
                given[t] = sizes[t]
            open_topics -= full
            continue
        floors = {t: int(np.floor(share[t])) for t in open_topics}
        for t, n in floors.items():
            given[t] += n
        left = remaining - sum(floors.values())
        by_fraction = sorted(open_topics, key=lambda t: (-(share[t] - floors[t]), t))
        for t in by_fraction[:left]:
            given[t] += 1
        remaining = 0
    return given


def choose_balanced(scores: np.ndarray, topics: list[str], k: int, mode: str, temperature: float, seed: int,
                    weights: dict[str, float] | None = None) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """Indices chosen topic by topic (sorted), and per-topic ``{records, kept}``."""
    labels = np.asarray(topics, dtype=object)
    names = sorted(set(topics))
    members = {t: np.flatnonzero(labels == t) for t in names}
    quota = allocate({t: len(m) for t, m in members.items()}, k, weights)
    picked, report = [], {}
    for i, topic in enumerate(names):
        rows = members[topic]
        chosen = rows[choose(scores[rows], quota[topic], mode, temperature, seed + i)] if quota[topic] else rows[:0]
        picked.append(chosen)
        report[topic] = {"records": int(len(rows)), "kept": int(len(chosen))}
    return (np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)), report


class BalanceSpec:
    """A validated ``select.balance`` block: where topics come from and their weights."""

    def __init__(self, raw: Any):
        if not isinstance(raw, dict):
            raise UserError("select.balance: expected a mapping such as {field: category}")
        reject_unknown_keys(raw, {"field", "classifier", "options", "weights"}, "select.balance")
        if ("field" in raw) == ("classifier" in raw):
            raise UserError("select.balance: give exactly one of field (a record field) or classifier (a plugin)")
        self.field = raw.get("field")
        if self.field is not None and not isinstance(self.field, str):
            raise UserError(f"select.balance.field: expected a field name, got {self.field!r}")
        weights = raw.get("weights") or {}
        if not isinstance(weights, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in weights.values()):
            raise UserError(f"select.balance.weights: expected {{topic: non-negative weight}}, got {weights!r}")
        self.weights = {str(t): float(w) for t, w in weights.items()}
        self.classifier = None
        if "classifier" in raw:
            options = raw.get("options") or {}
            if not isinstance(options, dict):
                raise UserError(f"select.balance.options: expected a mapping, got {options!r}")
            self.classifier = topic_classifiers.get(str(raw["classifier"]))(dict(options))
        self.name = f"field {self.field}" if self.field else f"classifier {raw['classifier']}"

    def topics(self, records: list[dict], texts: list[str]) -> list[str]:
        """One topic per record: its field (``(none)`` when absent) or the classifier's."""
        if self.field is not None:
            return [MISSING if r.get(self.field) in (None, "") else str(r.get(self.field)) for r in records]
        labels = list(self.classifier.classify(texts))
        if len(labels) != len(texts):
            raise UserError(f"select.balance: the {self.name} returned {len(labels)} topics for {len(texts)} texts")
        return [str(label) for label in labels]


class KeywordClassifier:
    """The topic whose keywords occur most often in the text (case-insensitive); ties go
    to the topic listed first; no keyword at all gives ``default``."""

    def __init__(self, topics: dict[str, list[str]], default: str = "other"):
        self.topics = {t: [k.lower() for k in kws] for t, kws in topics.items()}
        self.default = default

    def classify(self, texts: list[str]) -> list[str]:
        """One topic per text."""
        out = []
        for text in texts:
            lowered = text.lower()
            counts = [(sum(lowered.count(k) for k in kws), -i, t) for i, (t, kws) in enumerate(self.topics.items())]
            best = max(counts) if counts else (0, 0, self.default)
            out.append(best[2] if best[0] > 0 else self.default)
        return out


def keyword_classifier(options: dict) -> KeywordClassifier:
    """The built-in ``keywords`` classifier from ``{topics: {name: [keyword, ...]}, default}``."""
    reject_unknown_keys(options, {"topics", "default"}, "select.balance.options")
    topics = options.get("topics")
    if not isinstance(topics, dict) or not topics or not all(
            isinstance(v, list) and v and all(isinstance(k, str) and k for k in v) for v in topics.values()):
        raise UserError("select.balance.options.topics: expected {topic: [keyword, ...]} with at least one topic, "
                        f"got {topics!r}")
    return KeywordClassifier({str(t): v for t, v in topics.items()}, str(options.get("default", "other")))
