"""Record filters: per-source quality rules applied to each rendered record.

A recipe source lists its filters, each a registered name with its options:

    filters:
      - {name: length, min_chars: 50, max_chars: 100000}
      - {name: repetition, max_duplicate_line_share: 0.3, max_top_ngram_share: 0.2}
      - {name: characters, max_symbol_share: 0.3, max_digit_share: 0.5, max_markup_share: 0.2}
      - {name: required_fields, fields: [title, description]}
      - {name: script, script: cjk, min_share: 0.3}

A filter factory (``ecomharness_filters`` hook; the built-ins below are registered by
builtin/data.py through the same hook) is called once per process with the options
and returns ``check(text, record) -> reason | None``: None keeps the record, a reason
(a short phrase) drops it. Filters run in ``data.records.render_source`` after
rendering, in the listed order, on both engines; a drop is counted per source and
reason (``stats.json``: ``filtered``), not as a bad record, and the first few dropped
texts per reason are written beside the build (``filtered/SOURCE.jsonl``).

Shares follow the Gopher rules (Rae et al., 2021) and are measured on characters, so
they read the same for Chinese, which has no spaces: a line share is the share of
characters in lines that occur more than once; an n-gram share is the share of
characters covered by the most frequent n-gram (words for Latin text, characters for
CJK text).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import regex

from ecomharness.errors import UserError
from ecomharness.registry import filters as filter_registry
from ecomharness.util import check_share

Check = Callable[[str, dict], "str | None"]


@dataclass(frozen=True)
class FilterSpec:
    """One filter of a source: its registered name and options, as the recipe gives them."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def parse_filters(raw: Any, where: str) -> tuple[FilterSpec, ...]:
    """A source's ``filters`` list, each built once here so that a bad option fails when
    the recipe is read, naming its field."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UserError(f"{where}: expected a list of filters ({{name: ..., options...}}), got {raw!r}")
    specs = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise UserError(f"{at}: expected a mapping with a filter name, got {item!r}")
        options = {k: v for k, v in item.items() if k != "name"}
        spec = FilterSpec(item["name"], options)
        build_filter(spec, at)
        specs.append(spec)
    return tuple(specs)


def build_filter(spec: FilterSpec, where: str) -> Check:
    """The check of one filter (``UserError`` naming ``where`` for a bad option)."""
    factory = filter_registry.get(spec.name)
    return factory(dict(spec.options), where)


_BUILT: dict[tuple, list] = {}


def source_checks(source) -> list[tuple[str, Check]]:
    """``(filter name, check)`` for each filter of a source, built once per process."""
    key = (source.name, tuple((f.name, repr(sorted(f.options.items()))) for f in source.filters))
    if key not in _BUILT:
        _BUILT[key] = [(f.name, build_filter(f, f"source {source.name!r} filter {f.name!r}"))
                       for f in source.filters]
    return _BUILT[key]


def first_drop(checks: list[tuple[str, Check]], text: str, record: dict) -> str | None:
    """``"filter: reason"`` of the first check that drops the record, or None to keep it."""
    for name, check in checks:
        reason = check(text, record)
        if reason is not None:
            return f"{name}: {reason}"
    return None


# ----------------------------------------------------------------------------- option checks


def _share(options: dict, key: str, where: str) -> float | None:
    value = options.pop(key, None)
    return None if value is None else check_share(value, f"{where}.{key}")


def _count(options: dict, key: str, where: str, low: int = 0) -> int | None:
    value = options.pop(key, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{where}.{key}: expected a whole number >= {low}, got {value!r}")
    return value


def _no_more(options: dict, where: str, known: str) -> None:
    if options:
        raise UserError(f"{where}: unknown option(s) {', '.join(sorted(options))} (known: {known})")


# ----------------------------------------------------------------------------- text measures


_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
# Counted by the regex engine, not character by character in Python: a filter runs on
# every record of every source, and these counts were most of a cleaned build's time.
_CJK_CHAR = re.compile(f"[{_CJK_CLASS}]")
_LATIN_LETTER = re.compile("[A-Za-z\u00c0-\u024f]")
_ALNUM_CHAR = re.compile(r"[^\W_]")  # str.isalnum, one character at a time
_WORD = re.compile(r"\w+", re.UNICODE)


def is_cjk(char: str) -> bool:
    """A Han, kana or hangul character (the scripts written without spaces)."""
    return _CJK_CHAR.match(char) is not None


def _letters(text: str) -> tuple[int, int]:
    """(CJK characters, Latin letters) of a text."""
    return len(_CJK_CHAR.findall(text)), len(_LATIN_LETTER.findall(text))


def _units(text: str) -> list[str]:
    """Words for Latin text, characters (no spaces or punctuation) for CJK text: the
    units its n-grams are made of."""
    cjk, latin = _letters(text)
    if cjk > latin:
        return _ALNUM_CHAR.findall(text)
    return _WORD.findall(text.lower())


def duplicate_share(parts: list[str]) -> float:
    """The share of characters in parts that occur more than once (Gopher's duplicate
    line and paragraph fractions, by characters)."""
    parts = [p.strip() for p in parts if p.strip()]
    total = sum(len(p) for p in parts)
    if not total:
        return 0.0
    counts = Counter(parts)
    return sum(len(p) for p in parts if counts[p] > 1) / total


def top_ngram_share(text: str, n: int) -> float:
    """The share of the text's unit characters covered by its most frequent n-gram."""
    units = _units(text)
    if len(units) < n:
        return 0.0
    grams = Counter(zip(*(units[i:] for i in range(n))))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    total = sum(map(len, units))
    return min(1.0, count * sum(map(len, gram)) / total) if total else 0.0


_MARKUP = re.compile(r"<[^<>\n]{0,200}>|&[A-Za-z]{2,8};|&#\d{1,7};")
_SPACE = re.compile(r"\s")
# Unicode categories P* and S*, and str.isdigit, by the regex module (which transformers
# already requires): the standard re module has no category classes.
_SYMBOL = regex.compile(r"[\p{P}\p{S}]")
_DIGIT = regex.compile(r"[\p{Numeric_Type=Decimal}\p{Numeric_Type=Digit}]")


def character_shares(text: str) -> dict[str, float]:
    """Shares of symbols (Unicode punctuation and symbol categories), digits and markup
    (characters inside HTML/XML tags and entities) among the text's non-space characters."""
    n = len(text) - len(_SPACE.findall(text))
    if not n:
        return {"symbol": 0.0, "digit": 0.0, "markup": 0.0}
    symbols = len(_SYMBOL.findall(text))
    digits = len(_DIGIT.findall(text))
    markup = sum(len(m.group(0).replace(" ", "")) for m in _MARKUP.finditer(text))
    return {"symbol": symbols / n, "digit": digits / n, "markup": min(1.0, markup / n)}


# ----------------------------------------------------------------------------- built-in filters


def length(options: dict, where: str) -> Check:
    """Bounds on the rendered text's length in characters (``min_chars``, ``max_chars``)
    and in words or CJK characters (``min_words``, ``max_words``)."""
    bounds = {k: _count(options, k, where) for k in ("min_chars", "max_chars", "min_words", "max_words")}
    _no_more(options, where, "min_chars, max_chars, min_words, max_words")
    if all(v is None for v in bounds.values()):
        raise UserError(f"{where}: the length filter needs at least one of min_chars, max_chars, min_words, max_words")

    def check(text: str, record: dict) -> str | None:
        chars = len(text)
        if bounds["min_chars"] is not None and chars < bounds["min_chars"]:
            return "too short"
        if bounds["max_chars"] is not None and chars > bounds["max_chars"]:
            return "too long"
        if bounds["min_words"] is not None or bounds["max_words"] is not None:
            words = len(_units(text))
            if bounds["min_words"] is not None and words < bounds["min_words"]:
                return "too few words"
            if bounds["max_words"] is not None and words > bounds["max_words"]:
                return "too many words"
        return None

    return check


def repetition(options: dict, where: str) -> Check:
    """Gopher-style repetition: the shares of characters in duplicated lines
    (``max_duplicate_line_share``) and paragraphs (``max_duplicate_paragraph_share``),
    and covered by the most frequent n-gram (``max_top_ngram_share``, ``ngram``
    default 2; words for Latin text, characters for CJK text)."""
    line = _share(options, "max_duplicate_line_share", where)
    paragraph = _share(options, "max_duplicate_paragraph_share", where)
    top = _share(options, "max_top_ngram_share", where)
    n = _count(options, "ngram", where, low=1) or 2
    _no_more(options, where, "max_duplicate_line_share, max_duplicate_paragraph_share, max_top_ngram_share, ngram")
    if line is None and paragraph is None and top is None:
        raise UserError(f"{where}: the repetition filter needs at least one max_..._share")

    def check(text: str, record: dict) -> str | None:
        if line is not None and duplicate_share(text.split("\n")) > line:
            return "repeated lines"
        if paragraph is not None and duplicate_share(re.split(r"\n\s*\n", text)) > paragraph:
            return "repeated paragraphs"
        if top is not None and top_ngram_share(text, n) > top:
            return "repeated n-gram"
        return None

    return check


def characters(options: dict, where: str) -> Check:
    """Caps on the shares of symbols (``max_symbol_share``), digits
    (``max_digit_share``) and markup (``max_markup_share``) among non-space characters."""
    caps = {k: _share(options, f"max_{k}_share", where) for k in ("symbol", "digit", "markup")}
    _no_more(options, where, "max_symbol_share, max_digit_share, max_markup_share")
    if all(v is None for v in caps.values()):
        raise UserError(f"{where}: the characters filter needs at least one max_..._share")

    def check(text: str, record: dict) -> str | None:
        shares = character_shares(text)
        for kind, cap in caps.items():
            if cap is not None and shares[kind] > cap:
                return f"too many {kind} characters" if kind != "markup" else "too much markup"
        return None

    return check


def required_fields(options: dict, where: str) -> Check:
    """Every field of ``fields`` present in the record and not empty (records that render
    without them, through a template with defaults, are dropped)."""
    fields = options.pop("fields", None)
    _no_more(options, where, "fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise UserError(f"{where}.fields: expected a list of field names, got {fields!r}")

    def check(text: str, record: dict) -> str | None:
        for name in fields:
            value = record.get(name)
            if value is None or (isinstance(value, str) and not value.strip()) or value == [] or value == {}:
                return f"missing {name}"
        return None

    return check


SCRIPTS = ("cjk", "latin")


def script(options: dict, where: str) -> Check:
    """A minimum share (``min_share``) of the text's letters in ``script`` (``cjk``: Han,
    kana, hangul; ``latin``), counted by character, no model needed."""
    wanted = options.pop("script", None)
    share = _share(options, "min_share", where)
    _no_more(options, where, "script, min_share")
    if wanted not in SCRIPTS:
        raise UserError(f"{where}.script: expected one of {SCRIPTS}, got {wanted!r}")
    if share is None:
        raise UserError(f"{where}.min_share: required (a share from 0 to 1)")

    def check(text: str, record: dict) -> str | None:
        cjk, latin = _letters(text)
        letters = cjk + latin
        mine = cjk if wanted == "cjk" else latin
        if letters == 0 or mine / letters < share:
            return f"not enough {wanted} script"
        return None

    return check
