"""Reference-compatible FLARE scores: PIXIU 2023 and FinBen's entity F1.

The first published FLARE tables came from PIXIU's ``src/tasks/flare.py``
(chancefocus/PIXIU at 1fe354b, July 2023). On the same outputs its numbers are not
FinBen's current ones (``ecomharness.metrics.finben``), because of three things in that
code, reproduced here on purpose so that a result can be set beside those tables:

- its weighted F1 passes scikit-learn's ``f1_score`` the predictions as the truth and
  the gold labels as the predictions, so each label is weighted by how often the model
  *named* it, and an answer naming no choice ("missing") weighs nothing;
- its Headlines answer is "Yes" only when the output is exactly "Yes", unstripped (a
  leading space or a trailing newline makes it "No");
- it matches choices as written against the lower-cased answer.

FLARE NER (both PIXIU 2023 and FinBen's current code, The-FinAI/PIXIU at da45ac4, place
the answer the same way) puts each generated ``entity, TYPE`` line onto the sentence's
words by a character search (:func:`flare_ner_tags`) and scores the tags with seqeval's
micro F1 over the whole corpus (:func:`seqeval_f1`). This is not our ``entity_f1``,
which matches whole words case-insensitively: the character search is case-sensitive,
tags the word *after* a match that starts inside a word, and never tags an entity that
ends the sentence.

Nothing here is these repositories' code; tests hold the functions to values computed by
running it (``tests/reference/``).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ecomharness.metrics.extraction import ExtractionItem, bio_spans

# PIXIU's answer for an output naming no choice; never a label of its own.
PIXIU_MISSING = "missing"


def sklearn_weighted_f1(y_true: list[str], y_pred: list[str], labels: list[str]) -> float:
    """scikit-learn's ``f1_score(y_true, y_pred, average="weighted", labels=labels)``:
    each label's F1 weighted by its count in ``y_true``; 0.0 when no label of
    ``labels`` occurs in ``y_true`` (scikit-learn's zero-division value)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    support, named, hits = Counter(y_true), Counter(y_pred), Counter(t for t, p in zip(y_true, y_pred) if t == p)
    total = sum(support[label] for label in labels)
    if not total:
        return 0.0
    score = 0.0
    for label in labels:
        denominator = support[label] + named[label]
        score += support[label] * (2 * hits[label] / denominator if denominator else 0.0)
    return score / total


def pixiu_choice(answer: str, choices: list[str]) -> str:
    """PIXIU 2023's reading of a classification answer: the first choice, as written and
    in list order, found in the stripped, lower-cased answer; else ``"missing"``."""
    text = answer.strip().lower()
    return next((choice for choice in choices if choice in text), PIXIU_MISSING)


def pixiu_weighted_f1(rows: list[tuple[str, str]]) -> float:
    """PIXIU 2023's ``f1`` on ``(gold, PIXIU's prediction)`` rows: its arguments swapped,
    ``f1_score(preds, golds, average="weighted", labels=set(golds))``."""
    golds = [gold for gold, _ in rows]
    preds = [pred for _, pred in rows]
    return sklearn_weighted_f1(preds, golds, sorted(set(golds)))


def pixiu_headlines_prediction(answer: str) -> str:
    """PIXIU 2023's Headlines reading: "yes" only for an output that is exactly "Yes",
    not stripped first; anything else "no"."""
    return "yes" if answer == "Yes" else "no"


def pixiu_headlines_avg_f1(rows: list[tuple[str, str, str]]) -> float:
    """PIXIU 2023's ``avg_f1`` on ``(label type, gold, predicted)`` rows: the mean over
    label types of ``f1_score(preds, golds, average="weighted", labels=[yes, no])``."""
    by_type: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for label_type, gold, pred in rows:
        by_type[label_type][0].append(gold)
        by_type[label_type][1].append(pred)
    if not by_type:
        return 0.0
    scores = [sklearn_weighted_f1(preds, golds, ["yes", "no"]) for golds, preds in by_type.values()]
    return sum(scores) / len(scores)


# ---------------------------------------------------------------- FLARE NER


def _entity_lines(answer: str) -> list[tuple[str, str]]:
    # Lines split on "\n" only; the type is what follows the last ", " (so "X,ORG" has
    # no entity and "X, ORG." has type "ORG."), the entity everything before it.
    pairs = []
    for line in answer.split("\n"):
        *entity, kind = line.split(", ")
        pairs.append((", ".join(entity), kind))
    return pairs


def flare_ner_tags(answer: str, text: str) -> list[str]:
    """BIO tags, one per whitespace-separated word of ``text``, as FLARE's NER scoring
    places a generated answer on the sentence.

    For each ``entity, TYPE`` line in order, every case-sensitive occurrence of the
    entity in ``text`` is found by character search. Word starts are counted as if words
    were separated by one space. The first word starting at or after the occurrence gets
    ``B-TYPE``; the following words starting inside it get ``I-TYPE``. An occurrence
    with no word starting after its end (the sentence's last words) tags nothing. Later
    lines overwrite earlier tags.
    """
    words = text.split()
    tags = ["O"] * len(words)
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    for entity, kind in _entity_lines(answer):
        if not entity:
            continue
        found = text.find(entity)
        while found != -1:
            end = found + len(entity) - 1
            first = next((i for i, s in enumerate(starts) if s >= found), None)
            after = next((i for i, s in enumerate(starts) if s > end), None)
            if first is not None and after is not None:
                tags[first] = f"B-{kind}"
                for i in range(first + 1, after):
                    tags[i] = f"I-{kind}"
            found = text.find(entity, end + 1)
    return tags


def flare_ner_item(answer: str, text: str, gold_tags: list[str]) -> ExtractionItem:
    """One FLARE NER document as FinBen and PIXIU score it: the entities (seqeval's
    reading) of the gold tags and of :func:`flare_ner_tags`."""
    predicted = flare_ner_tags(answer, text)
    if len(predicted) != len(gold_tags):
        raise ValueError(f"{len(gold_tags)} BIO labels for {len(predicted)} words of the text")
    return ExtractionItem(bio_spans(gold_tags), bio_spans(predicted))


def seqeval_f1(items: list[ExtractionItem]) -> float:
    """seqeval's ``f1_score`` (micro) over documents: 0.0 when nothing is right, also
    when there is nothing to find and nothing is predicted (seqeval's zero division)."""
    tp = sum(len(i.gold & i.pred) for i in items)
    if not tp:
        return 0.0
    precision = tp / sum(len(i.pred) for i in items)
    recall = tp / sum(len(i.gold) for i in items)
    return 2 * precision * recall / (precision + recall)
