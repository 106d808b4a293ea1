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
"""

from __future__ import annotations

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


def units(text: str) -> list[str]:
    """A text's units after NFKC and lower case: words for Latin text and digits, single
    characters for CJK text; spaces and punctuation are not units."""
    return _UNIT.findall(unicodedata.normalize("NFKC", text).lower())


def is_cjk_unit(unit: str) -> bool:
    """Whether a unit (``units``) is a CJK character."""
    return len(unit) == 1 and bool(re.match(f"[{_CJK}]", unit))


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


def parse_contamination(raw: Any, where: str) -> ContaminationSpec | None:
    """A data recipe's ``decontaminate`` block (or the command's options), validated."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping such as {{tasks: [ecom_icl]}}, got {raw!r}")
    known = {"tasks", "ngram_words", "ngram_chars", "threshold", "template_share", "action", "metadata"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    tasks = raw.get("tasks")
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise UserError(f"{where}.tasks: expected a list of task or group names, got {tasks!r}")
    values = {}
    for key, default in (("ngram_words", DEFAULT_NGRAM), ("ngram_chars", DEFAULT_NGRAM_CHARS)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 3 <= value <= 200:
            raise UserError(f"{where}.{key}: expected a whole number from 3 to 200, got {value!r}")
        values[key] = value
    for key, default in (("threshold", 0.0), ("template_share", DEFAULT_TEMPLATE_SHARE)):
        values[key] = check_share(raw.get(key, default), f"{where}.{key}", below_one=True)
    action = raw.get("action", "drop")
    if action not in ACTIONS:
        raise UserError(f"{where}.action: expected one of {ACTIONS}, got {action!r}")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise UserError(f"{where}.metadata: expected a mapping (lm-eval's --metadata), got {metadata!r}")
    return ContaminationSpec(tuple(tasks), action=action, metadata=metadata, **values)


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
    prefixes: set = field(default_factory=set)  # first two units of every n-gram

    def matches(self, text: str) -> dict[int, float]:
        """Indexed documents the text contains, with the share of each one's n-grams found."""
        stream = units(text)
        found: dict[int, set] = defaultdict(set)
        for n in {self.ngram_words, self.ngram_chars}:
            for i in range(len(stream) - n + 1):
                if (stream[i], stream[i + 1]) not in self.prefixes:
                    continue
                gram = "\x00".join(stream[i:i + n])
                for doc in self.grams.get(gram, ()):
                    found[doc].add(gram)
        out = {}
        for doc, grams in found.items():
            share = len(grams) / self.sizes[doc]
            if share > self.threshold:
                out[doc] = share
        return out


def _content_grams(windows: list[str], n: int, common: set[str]) -> set[str]:
    """The document's n-grams that are its own: at least half of a window's units lie
    outside every template n-gram (a window that only adds a few units to the prompt
    template, such as a product name's last characters before the option list, is
    shared by documents by chance and is not indexed)."""
    covered = [0] * (len(windows) + n - 1)
    for i, gram in enumerate(windows):
        if gram in common:
            for j in range(i, i + n):
                covered[j] = 1
    prefix = [0]
    for c in covered:
        prefix.append(prefix[-1] + c)
    return {gram for i, gram in enumerate(windows)
            if gram not in common and (n - (prefix[i + n] - prefix[i])) * 2 >= n}


def build_index(documents: dict[str, list[tuple[int, str]]], spec: ContaminationSpec) -> NgramIndex:
    """The n-gram index of every task's documents (see the module docstring)."""
    indexed: list[tuple[str, int]] = []
    grams: dict[str, list[int]] = defaultdict(list)
    sizes, unchecked, template, totals = {}, {}, {}, {}
    for task, docs in sorted(documents.items()):
        totals[task] = len(docs)
        per_doc = []
        frequency: Counter = Counter()
        for doc_id, text in docs:
            stream = units(text)
            cjk = sum(1 for u in stream if is_cjk_unit(u))
            n = spec.ngram_chars if cjk * 2 > len(stream) else spec.ngram_words
            windows = ["\x00".join(stream[i:i + n]) for i in range(len(stream) - n + 1)]
            per_doc.append((doc_id, n, windows))
            frequency.update(set(windows))
        limit = max(3, spec.template_share * len(docs))
        common = {g for g, c in frequency.items() if c > limit}
        template[task] = len(common)
        unchecked[task] = []
        for doc_id, n, windows in per_doc:
            content = _content_grams(windows, n, common)
            if not content:
                unchecked[task].append(doc_id)
                continue
            index = len(indexed)
            indexed.append((task, doc_id))
            sizes[index] = len(content)
            for gram in content:
                grams[gram].append(index)
    prefixes = {tuple(g.split("\x00", 2)[:2]) for g in grams}
    return NgramIndex(indexed, dict(grams), sizes, totals, unchecked, template, spec.ngram_words,
                      spec.ngram_chars, spec.threshold, prefixes)


def build_report(spec: ContaminationSpec, index: NgramIndex, found: dict[int, int],
                 per_source: dict[str, int]) -> dict:
    """stats.json's ``contamination`` block: settings, per task what was found, per source
    the records that held a task document (dropped or only flagged, by ``action``)."""
    return {"action": spec.action, "settings": {"ngram_words": spec.ngram_words, "ngram_chars": spec.ngram_chars,
                                                "threshold": spec.threshold, "template_share": spec.template_share},
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
