"""Text normalisation and tokenisation that treat Chinese and English alike.

rouge-score's default tokenizer drops every non-ASCII character, so two identical
Chinese strings score ROUGE 0 under it. Here each CJK character (and each kana or
hangul syllable) is one token, and runs of other letters and digits are words.
"""

from __future__ import annotations

import re
import unicodedata

# CJK ideographs (+ ext. A, compatibility), kana, hangul syllables: one token each.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")

# Punctuation stripped from the ends of labels, ASCII and full-width/CJK forms.
# (After NFKC most full-width forms are ASCII already; the CJK ones remain.)
_EDGE_PUNCT = ".,;:!?'\"`()[]{}<>。，、；：！？“”‘’（）【】《》「」『』…—-~·"


def normalize(text: str) -> str:
    """NFKC (full-width -> half-width), case-folded, with whitespace runs collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Tokens for overlap metrics: CJK characters singly, other words whole, case-folded.

    Punctuation and whitespace are dropped. ``tokenize("Nike运动鞋 Air-Max 90")`` gives
    ``["nike", "运", "动", "鞋", "air", "max", "90"]``.
    """
    return _TOKEN.findall(normalize(text))


def has_cjk(text: str) -> bool:
    """True when the text contains at least one CJK character."""
    return _CJK_CHAR.search(text) is not None


def normalize_label(text: str) -> str:
    """A label as compared by classification metrics.

    NFKC folds full-width forms, case is folded, inner whitespace is collapsed, and
    punctuation at either end (English or Chinese, e.g. a trailing "。" or ".") is
    stripped: ``normalize_label(" Ｐｏｓｉｔｉｖｅ。")`` == ``"positive"``.
    """
    return normalize(text).strip().strip(_EDGE_PUNCT).strip()


class CJKTokenizer:
    """A tokenizer object in the shape rouge-score's ``RougeScorer(tokenizer=...)`` takes."""

    def tokenize(self, text: str) -> list[str]:
        """Same tokens as :func:`tokenize`."""
        return tokenize(text)
