"""EcomGPT's own scores (``*_ecomgpt``), beside ours, for comparison with its tables.

Reproduces the scoring of github.com/Alibaba-NLP/EcomGPT at eaa846f: ``src/eval.py``
picks a scorer class by the kind segment of the folder name (``EN-Lenovo-NER-NER``:
``NER``), and each class's ``evaluate`` (``src/data/task_cls.py``,
``src/data/task_extract.py``) reports three numbers per task: micro F1, "macro" F1 and
ROUGE-L. Nothing here is that code; tests hold these functions to values computed by
running it (``tests/reference/run_ecomgpt.py``). What that code does, reproduced here
on purpose so that a result can be set beside the EcomGPT paper's table:

- every kind but NER scores *sets* per document: the gold answer and the answer are
  split on the folder's ``label_sep`` (classification, extraction, condition
  extraction), or, for generation, taken as the *set of their characters*; micro F1
  sums the overlaps over documents, and the "macro" F1 is the F1 of the documents'
  averaged precision and recall (not an average of F1s). A multi-label answer earns
  partial credit. Strings compare as written: case and inner spaces count;
  classification strips the answer and deletes every ".", extraction strips both
  sides, condition extraction strips neither;
- NER tags the sentence *per character* (every occurrence of each ``type: span``
  of the answer, case-sensitive, later spans overwriting earlier ones) and scores
  the tags with seqeval's report: micro F1 over entities, macro F1 the mean over
  entity types of each type's F1;
- ROUGE-L is the ``rouge`` package's (1.0.1): sentences split on ".", words on
  whitespace (so unspaced Chinese is one word per sentence), summary-level LCS over
  distinct words; the mean over documents;
- an empty answer is scored as the word ``error`` (condition extraction: any answer
  of at most one character after stripping; extraction: any answer that is only
  spaces and full stops).

Where that code cannot score at all, these return a value and the tests say so: an
answer in which the ``rouge`` package finds no sentence (``"."``, ``" . "`` for
classification) makes it raise, and is scored here as ``error``, the code's own word
for an empty answer; a corpus with no entity to find and none predicted has a NaN
macro F1 there, 0.0 here. Two things are not reproduced: ``src/eval.py`` scores only
the first 5 documents of each folder (``load_data(...)[:5]``), and where two spans of
one type overlap in the sentence, the code tags them in the iteration order of a
Python ``set`` of strings, which changes with the interpreter's hash seed; here they
are tagged in sorted order (:func:`char_tags`). On the released Lenovo NER test set,
49 of the 500 gold answers have such spans; on answers made from them, EcomGPT's micro
F1 moved by up to 0.002 between hash seeds 0, 1 and 2.
"""

from __future__ import annotations

# The kind segments of EcomGPT's folder names, as src/eval.py maps them to its classes
# (CLS, NER, Condition_Extract, Extract, Generate), lower-cased.
SCORERS = ("cls", "ner", "condition_extract", "extract", "generate")
# What EcomGPT scores in place of an answer it finds empty.
ERROR = "error"


# ---------------------------------------------------------------- ROUGE-L (rouge 1.0.1)


def rouge_sentences(text: str) -> list[str]:
    """The ``rouge`` package's sentences: ``text`` split on ".", pieces that are not
    empty (spaces alone are kept, as an empty sentence), inner whitespace collapsed."""
    return [" ".join(piece.split()) for piece in text.split(".") if piece]


def _lcs_words(x: list[str], y: list[str]) -> list[str]:
    """The words of one longest common subsequence of ``x`` and ``y``, the one the
    ``rouge`` package reconstructs: from the end, a match is taken; otherwise it steps
    back in ``x`` only where that keeps a strictly longer LCS, else in ``y``."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(table[i - 1][j], table[i][j - 1])
    words, i, j = [], len(x), len(y)
    while i and j:
        if x[i - 1] == y[j - 1]:
            words.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l(hypothesis: str, reference: str) -> float:
    """The ``rouge`` package's ROUGE-L F (``Rouge().get_scores(h, r)[0]["rouge-l"]["f"]``):
    summary-level, over *distinct* words: the union of the words of the LCS of each
    reference sentence with each hypothesis sentence, over the distinct words of each
    side, F = 2PR / (P + R + 1e-8).

    Raises ValueError where the package does: a side with no sentence ("" or ".").
    """
    hyp, ref = rouge_sentences(hypothesis), rouge_sentences(reference)
    if not hyp or not ref:
        raise ValueError("Collections must contain at least 1 sentence.")
    ref_words = [word for sentence in ref for word in sentence.split(" ")]
    hyp_words = [word for sentence in hyp for word in sentence.split(" ")]
    union: set[str] = set()
    for ref_sentence in ref:
        for hyp_sentence in hyp:
            union.update(_lcs_words(ref_sentence.split(" "), hyp_sentence.split(" ")))
    recall, precision = len(union) / len(set(ref_words)), len(union) / len(set(hyp_words))
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


# ---------------------------------------------------------------- answers as EcomGPT reads them


def readable_answer(scorer: str, answer: str) -> str:
    """The answer as the scorer ``scorer`` passes it on, with the empty-answer rules of
    its class, and ``error`` where the ``rouge`` package would find no sentence in it
    (there the code raises; see the module docstring)."""
    if scorer not in SCORERS:
        raise ValueError(f"unknown EcomGPT scorer {scorer!r}: expected one of {SCORERS}")
    if scorer == "cls":
        text = ERROR if not answer else answer.strip().replace(".", "")
    elif scorer == "extract":
        text = ERROR if not answer.replace(".", "").strip() else answer
    elif scorer == "condition_extract":
        text = ERROR if len(answer.strip()) <= 1 else answer
    else:
        text = answer or ERROR
    return text if rouge_sentences(text) else ERROR


def set_items(scorer: str, text: str, sep: str) -> set[str]:
    """The set one side of a document becomes in the set scorer: generation's characters
    of the stripped text, else the pieces between ``sep`` (extraction strips first)."""
    if scorer == "generate":
        return set(text.strip())
    if scorer == "extract":
        return set(text.strip().split(sep))
    return set(text.split(sep))


def set_row(gold: set, pred: set) -> list:
    """``["set", overlap, predicted, gold, precision, recall]`` of one document; the
    document's precision and recall are 0 when either set is empty."""
    hits = len(gold & pred)
    if not gold or not pred:
        return ["set", hits, len(pred), len(gold), 0.0, 0.0]
    return ["set", hits, len(pred), len(gold), hits / len(pred), hits / len(gold)]


# ---------------------------------------------------------------- NER, per character


def typed_spans(answer: str, sep: str) -> dict[str, set[str]]:
    """EcomGPT's reading of an NER answer: lines ``type: span<sep>span``; a line without
    ": " or ending in it is skipped; spans are not stripped; repeated types collect.
    An answer with no such line is ``{"None": {"None"}}`` (nothing is tagged)."""
    found: dict[str, set[str]] = {}
    for line in answer.split("\n"):
        if ": " not in line or line.endswith(": "):
            continue
        kind, _, rest = line.partition(": ")
        found.setdefault(kind, set()).update(rest.split(sep))
    return found or {"None": {"None"}}


def char_tags(text: str, spans: dict[str, set[str]]) -> list[str]:
    """One BIO tag per character of ``text``: for each type, each of its spans (not
    "None"), at every position where it occurs, ``B-type`` then ``I-type`` over its
    other characters, later writes winning. An empty span matches everywhere and
    makes every character ``B-type``; it is tagged first, so the type's other spans
    overwrite it.

    Types are taken in the answer's order, a type's spans in sorted order: EcomGPT
    iterates a Python set of them, whose order depends on the strings' hashes, not on
    the order the answer lists them (so an answer listing the gold spans in another
    order is tagged as the gold is). That hash order changes with the interpreter's
    hash seed; sorting is a fixed stand-in for it, which agrees with it wherever the
    spans of a type do not overlap in the sentence, and puts the empty span first as
    the hash order does (the empty string's hash is 0 under every seed)."""
    tags = ["O"] * len(text)
    for kind, kind_spans in spans.items():
        for span in sorted(kind_spans):
            if span == "None":
                continue
            for j in range(len(text)):
                if text[j:j + len(span)] == span:
                    tags[j] = "B-" + kind
                    tags[j + 1:j + len(span)] = ["I-" + kind] * (len(span) - 1)
    return tags


def _tag_parts(tag: str) -> tuple[str, str]:
    # seqeval's split of a tag: its first character, and the rest after the first "-"
    # ("_" when empty, so "O" and "B-" have type "_").
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def seqeval_entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """``(type, first, last)`` entities of one sentence's tags, as seqeval's default
    (conlleval) mode reads B/I/O tags: an entity starts at B, at I after O, or at a tag
    whose type differs from the previous one; it ends before B, before O, or before
    another type."""
    entities = set()
    prev_tag, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        tag_char, kind = _tag_parts(tag)
        ends = (prev_tag in ("B", "I") and tag_char in ("B", "O")) or (prev_tag != "O" and prev_type != kind)
        if ends:
            entities.add((prev_type, begin, i - 1))
        if tag_char == "B" or (prev_tag == "O" and tag_char == "I") or (tag_char != "O" and prev_type != kind):
            begin = i
        prev_tag, prev_type = tag_char, kind
    return entities


def ner_row(text: str, answer: str, gold_answer: str, sep: str) -> list:
    """``["seqeval", [[type, hits, predicted, gold], ...]]``: one document's entity
    counts per type (the types its gold or its answer tags), sorted by type."""
    gold = seqeval_entities(char_tags(text, typed_spans(gold_answer, sep)))
    pred = seqeval_entities(char_tags(text, typed_spans(answer, sep)))
    kinds = sorted({e[0] for e in gold | pred})
    return ["seqeval", [[k, len({e for e in gold & pred if e[0] == k}), sum(e[0] == k for e in pred),
                         sum(e[0] == k for e in gold)] for k in kinds]]


# ---------------------------------------------------------------- one document, a task


def document_scores(scorer: str, answer: str, gold_answer: str, sep: str, text: str = "") -> dict:
    """The per-document values of the three ``*_ecomgpt`` metrics: the row for
    ``micro_f1_ecomgpt`` and ``macro_f1_ecomgpt`` (a set row, or per-type entity counts
    for NER, which needs the sentence ``text``) and ``rougeL_ecomgpt``.

    ``gold_answer`` is the gold output as EcomGPT builds it (the reader's
    ``ecomgpt_answer``); ``sep`` the folder's ``label_sep``."""
    read = readable_answer(scorer, answer)
    gold = ERROR if scorer == "condition_extract" and not gold_answer else gold_answer
    if scorer == "ner":
        row = ner_row(text, read, gold, sep)
    else:
        row = set_row(set_items(scorer, gold, sep), set_items(scorer, read, sep))
    try:
        rouge = rouge_l(read, gold)
    except ValueError:  # a gold answer with no sentence; the code raises here too
        rouge = 0.0
    return {"micro_f1_ecomgpt": row, "macro_f1_ecomgpt": row, "rougeL_ecomgpt": rouge}


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _kinds(rows) -> set[str]:
    kinds = {row[0] for row in rows}
    if len(kinds) > 1:
        raise ValueError(f"EcomGPT rows of several scorers in one task: {sorted(kinds)}")
    if kinds - {"set", "seqeval"}:
        raise ValueError(f"an EcomGPT row starts with 'set' or 'seqeval', got {sorted(kinds)}")
    return kinds


def _counts(row) -> tuple[int, int, int]:
    if row[0] == "set":
        return row[1], row[2], row[3]
    return tuple(sum(c[i] for c in row[1]) for i in (1, 2, 3))


def micro_f1(rows) -> float:
    """EcomGPT's micro F1: overlaps, predicted and gold items (entities for NER) summed
    over documents; 0 when nothing overlaps."""
    _kinds(rows)
    hits, predicted, gold = [sum(column) for column in zip(*map(_counts, rows))] or [0, 0, 0]
    return _f1(hits / predicted, hits / gold) if hits else 0.0


def macro_f1(rows) -> float:
    """EcomGPT's "macro" F1. Set scorer: the F1 of the mean over documents of their
    precision and of their recall. NER (seqeval's macro average): the mean over entity
    types of each type's F1 (0.0 where seqeval's is NaN: no entity at all)."""
    if not rows:
        return 0.0
    if _kinds(rows) == {"set"}:
        return _f1(sum(r[4] for r in rows) / len(rows), sum(r[5] for r in rows) / len(rows))
    per_type: dict[str, list[int]] = {}
    for row in rows:
        for kind, hits, predicted, gold in row[1]:
            total = per_type.setdefault(kind, [0, 0, 0])
            total[0] += hits
            total[1] += predicted
            total[2] += gold
    scores = [_f1(h / p if p else 0.0, h / g if g else 0.0) for h, p, g in per_type.values()]
    return sum(scores) / len(scores) if scores else 0.0

