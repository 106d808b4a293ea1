"""Read, render and tokenize every source into one ``RecordTable`` of numpy columns.

A record becomes one row: its source, language, linking key, token count and token ids
(all ids in one flat int32 array with offsets). Texts exist only per batch, so memory
grows with tokens, not with Python objects per record.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import jinja2.sandbox
import numpy as np

from ecomharness.data.filters import first_drop, source_checks
from ecomharness.data.identity import record_uid
from ecomharness.data.recipe import DataRecipe, SourceSpec
from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError


@dataclass
class RecordTable:
    """Columns of records; row ``i``'s ids are ``ids[starts[i]:starts[i] + n_tokens[i]]``.

    ``take`` gives a view of some rows that shares the id array (no copy of tokens).
    """

    source: np.ndarray  # int16, index into ``source_names``
    language: np.ndarray  # int16, index into ``languages``
    key: np.ndarray  # int64 code of the linking key, -1 when the record has none
    n_tokens: np.ndarray  # int32
    starts: np.ndarray  # int64 position of each row's first id in ``ids``
    ids: np.ndarray  # int32, all token ids
    source_names: list[str]
    source_kinds: list[str]
    languages: list[str]
    uid: np.ndarray  # uint64 content identity of each record (data/identity.record_uid)

    def __len__(self) -> int:
        return len(self.source)

    def token_ids(self, row: int) -> np.ndarray:
        """The token ids of one record."""
        return self.ids[self.starts[row] : self.starts[row] + self.n_tokens[row]]

    def take(self, rows: np.ndarray) -> RecordTable:
        """The given rows, in that order, sharing this table's token ids."""
        return RecordTable(
            source=self.source[rows], language=self.language[rows], key=self.key[rows],
            n_tokens=self.n_tokens[rows], starts=self.starts[rows], ids=self.ids,
            source_names=self.source_names, source_kinds=self.source_kinds, languages=self.languages,
            uid=self.uid[rows],
        )

    def rows_of_kind(self, kind: str) -> np.ndarray:
        """Row indices of the records whose source is of ``kind`` (domain / general)."""
        wanted = [i for i, k in enumerate(self.source_kinds) if k == kind]
        return np.flatnonzero(np.isin(self.source, wanted))


@dataclass
class SourceReport:
    """What one source contributed and what it lost."""

    records: int = 0
    bad: Counter = field(default_factory=Counter)
    bad_examples: list[str] = field(default_factory=list)
    filtered: Counter = field(default_factory=Counter)  # "filter: reason" -> records dropped
    filtered_examples: list[dict] = field(default_factory=list)  # the first few of each reason

    def count_bad(self, reason: str, message: str) -> None:
        """Count one skipped record by reason, keeping the first few messages."""
        self.bad[reason] += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(message)

    def count_filtered(self, reason: str, where: str, text: str) -> None:
        """Count one record a filter dropped, keeping the first few of each reason."""
        self.filtered[reason] += 1
        if self.filtered[reason] <= FILTERED_EXAMPLES:
            self.filtered_examples.append({"reason": reason, "where": where, "text": text})

    def merge(self, other: dict) -> None:
        """Add a report read back from ``as_dict`` (a piece of a source read elsewhere),
        in reading order: counts add up, examples keep the first ones."""
        self.bad.update(other["bad"])
        self.bad_examples.extend(other["examples"][:max(0, 5 - len(self.bad_examples))])
        for example in other.get("filtered_examples", []):
            if sum(1 for e in self.filtered_examples if e["reason"] == example["reason"]) < FILTERED_EXAMPLES:
                self.filtered_examples.append(example)
        self.filtered.update(other.get("filtered", {}))

    def as_dict(self) -> dict:
        """The report as plain data (``merge`` reads it back)."""
        return {"bad": dict(self.bad), "examples": self.bad_examples, "filtered": dict(self.filtered),
                "filtered_examples": self.filtered_examples}


# Dropped records kept per filter reason and source, written beside the build.
FILTERED_EXAMPLES = 3


_PLAIN_FIELDS = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _plain_renderer(template: str):
    """For templates that only substitute fields (``"{{ title }}\\n{{ body }}"``): the same
    text as Jinja renders, without its per-call context setup (the hot path of a build)."""
    if "{%" in template or "{#" in template:
        return None
    if template.endswith("\n"):  # Jinja drops one trailing newline of the template
        template = template[:-2] if template.endswith("\r\n") else template[:-1]
    pieces = _PLAIN_FIELDS.split(template)
    literals, fields = pieces[0::2], pieces[1::2]
    if any("{{" in lit or "}}" in lit for lit in literals):
        return None  # filters, expressions: leave them to Jinja

    def render(**record):
        out = [literals[0]]
        for name, literal in zip(fields, literals[1:]):
            try:
                value = record[name]
            except KeyError:
                raise jinja2.UndefinedError(f"'{name}' is undefined") from None
            out.append(value if isinstance(value, str) else _as_text(value, name))
            out.append(literal)
        return "".join(out)

    return render


class NonTextValue(ValueError):
    """A template would print a value that has no single text form (null, list, mapping,
    boolean): ``None`` or a Python repr would end up in the training text."""


def _as_text(value, name: str | None = None) -> str:
    """Numbers print as themselves; every other non-text value is a bad record unless
    the template formats it explicitly (``{{ tags | join(', ') }}``, ``{{ x or '' }}``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    field = f"field {name!r}" if name else "an expression"
    raise NonTextValue(f"{field} is {type(value).__name__} {value!r:.60}, not text; format it in the template")


def renderer(source: SourceSpec):
    """The source's template, compiled (``UserError`` naming the source and line when it does not)."""
    plain = _plain_renderer(source.template)
    if plain is not None:
        return plain
    # Sandboxed: a recipe is data, and its template must not reach Python internals
    # (``{{ ''.__class__.__mro__ ... }}`` runs shell commands in a plain Environment).
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                                        keep_trailing_newline=False, finalize=_as_text)
    try:
        template = env.from_string(source.template)
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"source {source.name!r}: template line {exc.lineno}: {exc.message}") from exc
    return template.render


class FilterVerdicts:
    """One source's filter verdicts, by the position of each record that reached the
    filters, kept by an engine that streams a source several times (the local engine's
    held-out, dedup, decontamination, selection and tokenize passes). Filters are
    functions of (text, record), so the first pass's verdicts stand for every later
    pass; only the first pays for them. One byte a record while fewer than 255 reasons
    are seen (then two)."""

    def __init__(self) -> None:
        self.codes = array("B")  # 0 keeps the record; k drops it for reasons[k - 1]
        self.reasons: list[str] = []

    def add(self, reason: str | None) -> None:
        """Remember the next record's verdict."""
        if reason is None:
            self.codes.append(0)
            return
        if reason not in self.reasons:
            self.reasons.append(reason)
            if len(self.reasons) == 255:
                self.codes = array("H", self.codes)
        self.codes.append(self.reasons.index(reason) + 1)

    def at(self, position: int) -> str | None:
        """The verdict of the record at ``position`` (it must have been added)."""
        code = self.codes[position]
        return self.reasons[code - 1] if code else None


def render_source(source: SourceSpec, stream, on_error: str, report: SourceReport,
                  verdicts: FilterVerdicts | None = None) -> Iterator[tuple[str | None, str, dict]]:
    """``(key, text, record)`` per good record of ``stream`` (a source's ``(location,
    record)`` pairs, as its reader yields them), raising or counting bad ones in
    ``report``. Both engines render through here: a per-record stage added here runs
    the same on either. ``verdicts`` (the same object on every pass over the source)
    makes the filters run once per record, not once per pass."""
    render = renderer(source)
    checks = source_checks(source)
    position = 0  # records that reached the filters

    def bad(reason: str, error: Exception | str) -> None:
        if on_error == "raise":
            raise error if isinstance(error, UserError) else UserError(str(error))
        report.count_bad(reason, str(error))

    for where, record in stream:
        if isinstance(record, RecordError):
            bad("unreadable", record)
            continue
        key = None
        if source.key is not None:
            key = record.get(source.key)
            if key is None or key == "":
                bad("missing key", f"{where}: field {source.key!r} (the linking key) is missing or empty")
                continue
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                bad("non-text key", f"{where}: field {source.key!r} (the linking key) is "
                                    f"{type(key).__name__} {key!r:.60}, expected text or a whole number")
                continue
            key = str(key)
        try:
            text = render(**record)
        except jinja2.UndefinedError as exc:
            bad("template field missing", f"{where}: template of source {source.name!r}: {exc.message}")
            continue
        except NonTextValue as exc:
            bad("non-text value", f"{where}: template of source {source.name!r}: {exc}")
            continue
        except jinja2.sandbox.SecurityError as exc:
            raise UserError(f"source {source.name!r}: the template is refused by the sandbox: {exc}") from exc
        except Exception as exc:  # a template calling a method on the wrong type, etc.
            bad("template error", f"{where}: template of source {source.name!r}: {type(exc).__name__}: {exc}")
            continue
        if not text.strip():
            bad("empty text", f"{where}: the rendered text is empty")
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate from a JSON "\ud800" escape
            bad("invalid Unicode", f"{where}: the text holds {exc.object[exc.start:exc.end]!r}, which is not "
                                   "valid Unicode (a lone surrogate)")
            continue
        if not checks:
            dropped = None
        elif verdicts is not None and position < len(verdicts.codes):
            dropped = verdicts.at(position)
        else:
            dropped = first_drop(checks, text, record)
            if verdicts is not None:
                verdicts.add(dropped)
        position += 1
        if dropped is not None:
            report.count_filtered(dropped, where, text)
            continue
        report.records += 1
        yield key, text, record


_TOKENIZER = None


def _load_tokenizer(name: str):
    from transformers import AutoTokenizer

    if Path(name).expanduser().is_absolute() and not Path(name).expanduser().exists():
        raise UserError(f"tokenizer {name}: no such directory (give a saved tokenizer's directory or a hub id)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        # transformers raises OSError for a hub id it cannot reach (offline) or a folder
        # without tokenizer files, ValueError for a config it cannot read.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"tokenizer {name}: cannot be loaded ({first}); give a saved tokenizer's directory, or a "
                        "hub id with the hub reachable") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"tokenizer {name}: a fast (Rust) tokenizer is required")
    if tokenizer.eos_token_id is None:
        raise UserError(f"tokenizer {name}: has no EOS token, which packing puts between documents")
    return tokenizer


def _init_worker(name: str) -> None:
    global _TOKENIZER
    _TOKENIZER = _load_tokenizer(name)


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens, as every engine encodes records."""
    # The Rust tokenizer directly: transformers' wrapper adds ~14 us of Python per text.
    return [e.ids for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]


def _encode(texts: list[str]) -> list[list[int]]:
    return encode_texts(_TOKENIZER, texts)


def load_tokenizer(name: str):
    """The recipe's fast tokenizer (also used in this process for separators and EOS)."""
    return _load_tokenizer(name)


def separator_ids(tokenizer, separator_text: str) -> np.ndarray:
    """The separator's token ids (int32), as packed between a sample's records."""
    return np.asarray(tokenizer(separator_text, add_special_tokens=False)["input_ids"], np.int32)


def pad_token(tokenizer) -> int:
    """The id that fills the last block of a shard (EOS when the tokenizer has no PAD)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def tokenizer_fingerprint(tokenizer) -> str:
    """The vocabulary's identity (every token and its id, added tokens included): the
    build records it, and training refuses data encoded with another vocabulary."""
    import hashlib
    import json

    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def build_table(recipe: DataRecipe, readers: dict, progress=None, keep: dict[str, np.ndarray] | None = None,
                verdicts: dict[str, FilterVerdicts] | None = None) -> tuple[RecordTable, dict[str, SourceReport]]:
    """Read, render and tokenize every source of the recipe into a ``RecordTable``.

    Tokenization is batched; with ``num_proc > 1`` batches go to worker processes.
    ``keep`` (from selection) masks a source's good records by their ordinal;
    ``verdicts`` are the filter verdicts of earlier passes, by source name.
    """
    global _TOKENIZER
    _TOKENIZER = load_tokenizer(recipe.tokenizer)
    languages = sorted({s.language for s in recipe.sources})
    key_codes: dict[str, int] = {}
    columns = {"source": [], "language": [], "key": [], "n_tokens": [], "uid": []}
    id_chunks: list[np.ndarray] = []
    reports = {s.name: SourceReport() for s in recipe.sources}
    pool = None
    if recipe.num_proc > 1:
        # Spawned (not forked) workers: a forked Rust tokenizer can deadlock. Each
        # worker loads the tokenizer once.
        pool = ProcessPoolExecutor(recipe.num_proc, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(recipe.tokenizer,))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if pool is None else "false")
    try:
        for index, source in enumerate(recipe.sources):
            records = readers[source.format](source.path, source.options)
            stream = ((key, text) for key, text, _ in render_source(source, records, recipe.on_error,
                                                                  reports[source.name],
                                                                  (verdicts or {}).get(source.name)))
            if keep is not None and source.name in keep:
                mask = keep[source.name]
                stream = (pair for ordinal, pair in enumerate(stream) if ordinal < len(mask) and mask[ordinal])
            lang = languages.index(source.language)
            # The uid travels with the key; only texts go to the tokenizer workers.
            stream = (((key, record_uid(source.name, key, text)), text) for key, text in stream)
            batches = _batched(stream, recipe.batch_size)
            encoded = _bounded_map(pool, batches, 2 * recipe.num_proc) if pool is not None else map(_encode_pair, batches)
            for keys, ids in encoded:
                for key, uid in keys:
                    columns["key"].append(-1 if key is None else key_codes.setdefault(key, len(key_codes)))
                    columns["uid"].append(uid)
                lengths = np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids))
                columns["n_tokens"].append(lengths)
                columns["source"].append(np.full(len(ids), index, dtype=np.int16))
                columns["language"].append(np.full(len(ids), lang, dtype=np.int16))
                id_chunks.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum())))
                if progress is not None:
                    progress.update(len(ids))
    finally:
        if pool is not None:
            pool.shutdown()
    n_tokens = np.concatenate(columns["n_tokens"]) if columns["n_tokens"] else np.zeros(0, np.int32)
    starts = np.zeros(len(n_tokens), dtype=np.int64)
    np.cumsum(n_tokens[:-1], out=starts[1:])
    table = RecordTable(
        source=np.concatenate(columns["source"]) if columns["source"] else np.zeros(0, np.int16),
        language=np.concatenate(columns["language"]) if columns["language"] else np.zeros(0, np.int16),
        key=np.asarray(columns["key"], dtype=np.int64),
        n_tokens=n_tokens,
        starts=starts,
        ids=np.concatenate(id_chunks) if id_chunks else np.zeros(0, np.int32),
        source_names=[s.name for s in recipe.sources],
        source_kinds=[s.kind for s in recipe.sources],
        languages=languages,
        uid=np.asarray(columns["uid"], dtype=np.uint64),
    )
    return table, reports


def _batched(stream, size: int):
    batch_keys, batch_texts = [], []
    for key, text in stream:
        batch_keys.append(key)
        batch_texts.append(text)
        if len(batch_texts) >= size:
            yield batch_keys, batch_texts
            batch_keys, batch_texts = [], []
    if batch_texts:
        yield batch_keys, batch_texts


def _bounded_map(pool, batches, window: int):
    """``pool.map`` that reads ahead at most ``window`` batches (Executor.map reads all)."""
    pending: deque = deque()
    for batch in batches:
        pending.append(pool.submit(_encode_pair, batch))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _encode_pair(batch):
    keys, texts = batch
    return keys, _encode(texts)
