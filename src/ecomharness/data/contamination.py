"""Contamination: which test documents of registered tasks a training corpus contains.

Each task document is taken as the model sees it: its prompt (``doc_to_text``) and its
gold answer, or the task's ``doc_to_decontamination_query`` where the task declares one
(lm-eval's ``should_decontaminate``). Texts are cut into units after NFKC and lower
case: a word for Latin text and digits, one character for CJK text. A document whose
units are mostly CJK is indexed by its character n-grams (``ngram_chars``, default 10),
any other by its word n-grams (``ngram_words``, default 13, as lm-eval's decontamination
and GPT-3 used). An n-gram that occurs in more documents of a task than
``template_share`` of them (and at least three) is the task's prompt template, not a
document's content, and is not indexed; a document with no n-gram left (shorter than
n units) cannot be checked and is counted as such, never as clean.

A corpus text contains a document when the share of the document's n-grams found in
the text exceeds ``threshold`` (default 0: any one of them, the usual rule).

Short documents (a review of a dozen words, a product title of twenty characters) have
few such n-grams or none, and a couple of changed characters leave none of them intact.
A document shorter than three n-grams' worth of units (but at least ``min_words``
words or ``min_chars`` characters) is therefore indexed by n-grams of a third of its
length (at least 2 words or 3 characters); those only make it a candidate, and a
character alignment decides: the best-matching stretch of the text must have an Indel
similarity (rapidfuzz ``partial_ratio``) of at least ``short_similarity`` (default 0.85)
with the document. ``short_similarity: 0`` turns this off (short documents are then
unchecked, as with plain n-grams).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ecomharness.errors import UserError
from ecomharness.util import check_share

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNIT = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
DEFAULT_NGRAM = 13
# Characters, for CJK text: 10 found every planted light edit of the bundled samples but
# 3%, with no match among 11,975 clean records of the synthetic shop; 8 matched 31 of
# them (shared attribute lists), 13 missed 14% of the edits (docs/data.md).
DEFAULT_NGRAM_CHARS = 10
DEFAULT_TEMPLATE_SHARE = 0.05
ACTIONS = ("drop", "flag")
# Short documents (module docstring). Measured on the real release files of
# ../shared/data (tests/test_contamination.py): 0.85 found 0.94 (en) and 0.95 (zh) of the
# light edits with no match among 11,975 clean records; shorter floors or a lower
# similarity began to match clean records.
DEFAULT_SHORT_SIMILARITY = 0.85
DEFAULT_MIN_WORDS = 5
DEFAULT_MIN_CHARS = 6
SHORT_FLOOR = {"words": 2, "chars": 3}  # the shortest candidate n-gram


def units(text: str) -> list[str]:
    """A text's units after NFKC and lower case: words for Latin text and digits, single
    characters for CJK text; spaces and punctuation are not units."""
    return _UNIT.findall(unicodedata.normalize("NFKC", text).lower())


_CJK_CHAR = re.compile(f"[{_CJK}]")


def is_cjk_unit(unit: str) -> bool:
    """Whether a unit (``units``) is a CJK character."""
    return len(unit) == 1 and _CJK_CHAR.match(unit) is not None


def _mostly_cjk(stream: list[str]) -> bool:
    return sum(1 for u in stream if is_cjk_unit(u)) * 2 > len(stream)


def unit_stream(text: str) -> tuple[list[str], bool]:
    """``units(text)`` and whether most of them are CJK characters (then n-grams are of
    characters). Every CJK character of the text is one unit and no other unit holds
    one, so they are counted on the text by the regex engine, not unit by unit."""
    normal = unicodedata.normalize("NFKC", text).lower()
    stream = _UNIT.findall(normal)
    return stream, len(_CJK_CHAR.findall(normal)) * 2 > len(stream)


@dataclass(frozen=True)
class ContaminationSpec:
    """What to check a corpus against, and how (see the module docstring)."""

    tasks: tuple[str, ...]
    ngram_words: int = DEFAULT_NGRAM
    ngram_chars: int = DEFAULT_NGRAM_CHARS
    threshold: float = 0.0
    template_share: float = DEFAULT_TEMPLATE_SHARE
    action: str = "drop"
    metadata: dict[str, Any] = field(default_factory=dict)
    short_similarity: float = DEFAULT_SHORT_SIMILARITY
    min_words: int = DEFAULT_MIN_WORDS
    min_chars: int = DEFAULT_MIN_CHARS


def parse_contamination(raw: Any, where: str) -> ContaminationSpec | None:
    """A data recipe's ``decontaminate`` block (or the command's options), validated."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping such as {{tasks: [ecom_icl]}}, got {raw!r}")
    known = {"tasks", "ngram_words", "ngram_chars", "threshold", "template_share", "action", "metadata",
             "short_similarity", "min_words", "min_chars"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    tasks = raw.get("tasks", [])
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t]
    # No tasks: ``data build --for TRAIN.yaml`` gives its evaluation profiles' tasks
    # (tasks_for_training); a build without it stops before reading anything.
    given_empty = "tasks" in raw and not tasks
    if not isinstance(tasks, list) or given_empty or not all(isinstance(t, str) and t for t in tasks):
        raise UserError(f"{where}.tasks: expected a list of task or group names, got {tasks!r}")
    values = {}
    for key, default in (("ngram_words", DEFAULT_NGRAM), ("ngram_chars", DEFAULT_NGRAM_CHARS)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 3 <= value <= 200:
            raise UserError(f"{where}.{key}: expected a whole number from 3 to 200, got {value!r}")
        values[key] = value
    for key, default in (("min_words", DEFAULT_MIN_WORDS), ("min_chars", DEFAULT_MIN_CHARS)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 200:
            raise UserError(f"{where}.{key}: expected a whole number from 2 to 200, got {value!r}")
        values[key] = value
    for key, default in (("threshold", 0.0), ("template_share", DEFAULT_TEMPLATE_SHARE)):
        values[key] = check_share(raw.get(key, default), f"{where}.{key}", below_one=True)
    values["short_similarity"] = check_share(raw.get("short_similarity", DEFAULT_SHORT_SIMILARITY),
                                             f"{where}.short_similarity")
    action = raw.get("action", "drop")
    if action not in ACTIONS:
        raise UserError(f"{where}.action: expected one of {ACTIONS}, got {action!r}")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise UserError(f"{where}.metadata: expected a mapping (lm-eval's --metadata), got {metadata!r}")
    return ContaminationSpec(tuple(tasks), action=action, metadata=metadata, **values)


def tasks_for_training(train_recipe) -> list[str]:
    """The tasks and groups a training recipe's evaluation profiles run (inline and
    asynchronous), the held-out bits-per-byte tasks left out: the build indexes its
    held-out texts itself."""
    names: list[str] = []
    for profile in train_recipe.eval.profiles().values():
        names.extend(str(t) for t in profile.tasks if not str(t).startswith("heldout") and str(t) not in names)
    return names


def document_text(task, doc: dict) -> str:
    """A task document as the model sees it: prompt and gold answer, or the task's own
    decontamination query."""
    if getattr(task.config, "should_decontaminate", False) and task.config.doc_to_decontamination_query:
        return str(task.doc_to_decontamination_query(doc))
    prompt = task.doc_to_text(doc)
    prompt = prompt if isinstance(prompt, str) else ""
    target = task.doc_to_target(doc)
    if isinstance(target, list):
        target = target[0] if target else ""
    if isinstance(target, int) and not isinstance(target, bool):
        choices = task.doc_to_choice(doc) if task.config.doc_to_choice is not None else None
        target = choices[target] if isinstance(choices, list) and 0 <= target < len(choices) else ""
    return f"{prompt} {target}" if isinstance(target, str) else prompt


def task_documents(tasks: list[str], metadata: dict | None = None,
                   include_path: str | None = None) -> dict[str, list[tuple[int, str]]]:
    """``{leaf task: [(doc_id, text)]}`` of the evaluation documents of tasks or groups
    (lm-eval's own tasks included), opened as ``lm_eval`` opens them."""
    from ecomharness.tasks.lint import load_checked
    from ecomharness.tasks.open import open_tasks

    opened = open_tasks(list(tasks), include_path=include_path, metadata=metadata)
    loaded = load_checked(opened.manager, opened.names)["tasks"]
    out = {}
    for name, task in sorted(loaded.items()):
        out[name] = [(doc_id, document_text(task, doc)) for doc_id, doc in enumerate(task.eval_docs)]
    return out


@dataclass
class NgramIndex:
    """Every checkable task document's content n-grams, for lookups from corpus text."""

    documents: list[tuple[str, int]]  # (task, doc_id) per indexed document
    grams: dict[str, list[int]]  # n-gram -> indexed documents holding it
    sizes: dict[int, int]  # indexed document -> its number of content n-grams
    totals: dict[str, int]  # task -> documents
    unchecked: dict[str, list[int]]  # task -> doc ids too short (or all template) to check
    template: dict[str, int]  # task -> template n-grams left out
    ngram_words: int = DEFAULT_NGRAM
    ngram_chars: int = DEFAULT_NGRAM_CHARS
    threshold: float = 0.0
    # The first two units of every n-gram -> the n-gram lengths starting so, so a corpus
    # text costs one lookup per unit whatever lengths the index holds.
    prefixes: dict = field(default_factory=dict)
    # Short document -> its own stretches of units (between template pieces), space-joined.
    short: dict[int, tuple[str, ...]] = field(default_factory=dict)
    short_similarity: float = DEFAULT_SHORT_SIMILARITY

    def matches(self, text: str) -> dict[int, float]:
        """Indexed documents the text contains, with the share of each one's n-grams found
        (for a short document, its alignment similarity)."""
        stream = units(text)
        found: dict[int, set] = defaultdict(set)
        grams, prefixes = self.grams, self.prefixes
        for i in range(len(stream) - 1):
            lengths = prefixes.get((stream[i], stream[i + 1]))
            if lengths is None:
                continue
            for n in lengths:
                if i + n > len(stream):
                    break
                gram = "\x00".join(stream[i:i + n])
                for doc in grams.get(gram, ()):
                    found[doc].add(gram)
        out = {}
        joined = None
        for doc, hits in found.items():
            if doc in self.short:
                joined = " ".join(stream) if joined is None else joined
                score = _aligned(self.short[doc], joined)
                if score >= self.short_similarity:
                    out[doc] = score
                continue
            share = len(hits) / self.sizes[doc]
            if share > self.threshold:
                out[doc] = share
        return out


def _aligned(runs: tuple[str, ...], text: str) -> float:
    """How well a short document's stretches are found in a text: each one's best
    alignment (rapidfuzz ``partial_ratio``, an Indel similarity), weighted by length."""
    from rapidfuzz import fuzz

    total = sum(len(r) for r in runs)
    return sum(len(r) * fuzz.partial_ratio(r, text) for r in runs) / (100 * total) if total else 0.0


def _template_covered(windows: list[str], n: int, common: set[str]) -> list[int]:
    """Per unit of a document, 1 when a template n-gram covers it."""
    covered = [0] * (len(windows) + n - 1)
    for i, gram in enumerate(windows):
        if gram in common:
            for j in range(i, i + n):
                covered[j] = 1
    return covered


def _content_grams(windows: list[str], n: int, common: set[str]) -> set[str]:
    """The document's n-grams that are its own: at least half of a window's units lie
    outside every template n-gram (a window that only adds a few units to the prompt
    template, such as a product name's last characters before the option list, is
    shared by documents by chance and is not indexed)."""
    prefix = [0]
    for c in _template_covered(windows, n, common):
        prefix.append(prefix[-1] + c)
    return {gram for i, gram in enumerate(windows)
            if gram not in common and (n - (prefix[i + n] - prefix[i])) * 2 >= n}


def _ngram_length(length: int, mostly_cjk: bool, spec: ContaminationSpec) -> tuple[int, bool]:
    """The n-gram length a document of ``length`` units is indexed by, and whether it is
    a short document (candidates confirmed by alignment; see the module docstring)."""
    full = spec.ngram_chars if mostly_cjk else spec.ngram_words
    if not spec.short_similarity or length >= 3 * full:
        return full, False
    short = _short_ngram(length, mostly_cjk, spec)
    return (length + 1, False) if short is None else (short, True)  # length + 1: no window, unchecked


def _short_ngram(length: int, mostly_cjk: bool, spec: ContaminationSpec) -> int | None:
    """The candidate n-gram length for a short document of ``length`` units (of its own):
    a third of them, at least ``SHORT_FLOOR``; None under ``min_words`` / ``min_chars``."""
    if length < (spec.min_chars if mostly_cjk else spec.min_words):
        return None
    return max(SHORT_FLOOR["chars" if mostly_cjk else "words"], length // 3)


def build_index(documents: dict[str, list[tuple[int, str]]], spec: ContaminationSpec) -> NgramIndex:
    """The n-gram index of every task's documents (see the module docstring)."""
    indexed: list[tuple[str, int]] = []
    grams: dict[str, list[int]] = defaultdict(list)
    sizes, unchecked, template, totals, short = {}, {}, {}, {}, {}
    for task, docs in sorted(documents.items()):
        totals[task] = len(docs)
        per_doc = []
        frequency: Counter = Counter()
        for doc_id, text in docs:
            stream, mostly_cjk = unit_stream(text)
            n, is_short = _ngram_length(len(stream), mostly_cjk, spec)
            windows = ["\x00".join(stream[i:i + n]) for i in range(len(stream) - n + 1)]
            per_doc.append((doc_id, n, windows, stream if is_short else None))
            frequency.update(set(windows))
        limit = max(3, spec.template_share * len(docs))
        common = {g for g, c in frequency.items() if c > limit}
        template[task] = len(common)
        unchecked[task] = []
        for doc_id, n, windows, stream in per_doc:
            content = _content_grams(windows, n, common)
            runs = None
            if stream is not None:
                # A short document is checked on its own units, between the template's
                # pieces: the template alone would make every document of the task look
                # like every other one. Candidates are n-grams inside those stretches;
                # each stretch is aligned on its own, since in a text the template stands
                # between them.
                covered = _template_covered(windows, n, common) if windows else [0] * len(stream)
                pieces = [[u for u, _ in group] for c, group in
                          itertools.groupby(zip(stream, covered), key=lambda pair: pair[1]) if not c]
                own = [u for piece in pieces for u in piece]
                m = _short_ngram(len(own), _mostly_cjk(own), spec)
                content = set() if m is None else \
                    {"\x00".join(p[i:i + m]) for p in pieces for i in range(len(p) - m + 1)}
                runs = tuple(" ".join(piece) for piece in pieces)
            if not content:
                unchecked[task].append(doc_id)
                continue
            index = len(indexed)
            indexed.append((task, doc_id))
            sizes[index] = len(content)
            if runs is not None:
                short[index] = runs
            for gram in content:
                grams[gram].append(index)
    prefixes: dict[tuple, set] = defaultdict(set)
    for gram in grams:
        parts = gram.split("\x00")
        prefixes[(parts[0], parts[1])].add(len(parts))
    return NgramIndex(indexed, dict(grams), sizes, totals, unchecked, template, spec.ngram_words,
                      spec.ngram_chars, spec.threshold, {k: tuple(sorted(v)) for k, v in prefixes.items()},
                      short, spec.short_similarity)


def build_report(spec: ContaminationSpec, index: NgramIndex, found: dict[int, int],
                 per_source: dict[str, int]) -> dict:
    """stats.json's ``contamination`` block: settings, per task what was found, per source
    the records that held a task document (dropped or only flagged, by ``action``)."""
    return {"action": spec.action, "settings": {"ngram_words": spec.ngram_words, "ngram_chars": spec.ngram_chars,
                                                "threshold": spec.threshold, "template_share": spec.template_share,
                                                "short_similarity": spec.short_similarity,
                                                "min_words": spec.min_words, "min_chars": spec.min_chars},
            "tasks": task_report(index, found), "records": dict(per_source)}


def heldout_documents(documents: dict[str, list[dict]]) -> dict[str, list[tuple[int, str]]]:
    """A build's held-out texts as pseudo-tasks ``heldout:FOLDER`` (their line numbers as ids)."""
    return {f"heldout:{folder}": [(i, doc["text"]) for i, doc in enumerate(docs)]
            for folder, docs in sorted(documents.items())}


def task_report(index: NgramIndex, found: dict[int, Any]) -> dict[str, dict]:
    """Per task: documents, checked, found in the corpus (count, share of all documents,
    ids), and the ids that could not be checked."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for doc in found:
        task, doc_id = index.documents[doc]
        by_task[task].append(doc_id)
    out = {}
    for task, total in sorted(index.totals.items()):
        ids = sorted(by_task.get(task, []))
        out[task] = {"documents": total, "checked": total - len(index.unchecked[task]), "found": len(ids),
                     "share": len(ids) / total if total else 0.0, "found_ids": ids,
                     "unchecked_ids": index.unchecked[task], "template_ngrams": index.template[task]}
    return out
