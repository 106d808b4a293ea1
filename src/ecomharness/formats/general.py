"""The hub field layouts of the general_icl tasks: AG News and TNEWS (``text`` /
``sentence`` + ``label``), SNLI and OCNLI (a sentence pair + ``label``), SQuAD v2 and
CMRC2018 (``context``, ``question``, ``answers: {text, answer_start}``).

``label`` is either an index into the task's label names (the hub's ``ClassLabel``;
-1 means "no gold", as SNLI and OCNLI use it) or one of the names itself.
"""

from __future__ import annotations

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError

# What an unanswerable question's few-shot example shows as its answer.
NO_ANSWER = "unanswerable"

CONVERTERS = ("agnews", "tnews", "snli", "ocnli", "squad_v2", "cmrc2018")


def _label(value, names: tuple[str, ...], path, line, key="label") -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            return None  # the hub's "no gold label" (SNLI/OCNLI -1)
        if value >= len(names):
            raise RecordError(path, line, key, f"{value} is not an index into {len(names)} labels")
        return names[value]
    if isinstance(value, str) and value in names:
        return value
    raise RecordError(path, line, key, f"{value!r} is not one of {list(names)}")


def _answers(record, path, line) -> list[str]:
    answers = record.get("answers")
    if not isinstance(answers, dict) or not isinstance(answers.get("text"), list):
        raise RecordError(path, line, "answers", "must be {text: [...], answer_start: [...]}")
    return [a for a in answers["text"] if isinstance(a, str)]


def _require_str(record, key, path, line) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(path, line, key, "must be a non-empty string")
    return value


def general_doc(record: dict, converter: str, label_names: tuple[str, ...], label_display: dict,
                path, line) -> dict | None:
    """One hub-layout record of a general_icl task -> our document, or None when it has
    no gold label. ``converter`` names the layout (one of ``CONVERTERS``);
    ``label_display`` maps a hub label name to the word the prompt shows;
    ``path``/``line`` name the record in a ``RecordError``."""
    label_set = [label_display.get(n, n) for n in label_names]

    def gold() -> str | None:
        label = _label(record.get("label"), label_names, path, line)
        return None if label is None else label_display.get(label, label)

    if converter in ("agnews", "tnews"):
        text = _require_str(record, "text" if converter == "agnews" else "sentence", path, line)
        label = gold()
        if label is None:
            return None
        return {"text": text, "target": label, "target_text": label, "label_set": label_set}
    if converter in ("snli", "ocnli"):
        first, second = ("premise", "hypothesis") if converter == "snli" else ("sentence1", "sentence2")
        doc = {"premise": _require_str(record, first, path, line),
               "hypothesis": _require_str(record, second, path, line)}
        label = gold()
        if label is None:
            return None
        return {**doc, "target": label, "target_text": label, "label_set": label_set}
    if converter in ("squad_v2", "cmrc2018"):
        answers = _answers(record, path, line)
        if converter == "cmrc2018" and not answers:
            raise RecordError(path, line, "answers", "CMRC2018 questions all have answers")
        return {
            "context": _require_str(record, "context", path, line),
            "question": _require_str(record, "question", path, line),
            "answers": answers,
            # Few-shot examples must show something for unanswerable questions.
            "target_text": answers[0] if answers else NO_ANSWER,
            "no_answer_text": NO_ANSWER,
        }
    raise UserError(f"unknown general converter {converter!r}; expected one of {', '.join(CONVERTERS)}")
