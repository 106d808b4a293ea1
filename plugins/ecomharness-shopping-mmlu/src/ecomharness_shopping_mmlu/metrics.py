r"""Scoring of Shopping MMLU's answers, by each question's own ``metric`` field.

A skill's score is the benchmark's: each task's metric over its questions, then the
unweighted mean over the skill's tasks (``skill_score``). Per question, with the
definitions and answer normalisation of the benchmark's skill-wise evaluation
(``skill_wise_eval/metrics.py`` of github.com/KL4805/ShoppingMMLU, commit 7b118da;
``tests/reference/`` runs that code on fixed outputs and the tests hold these functions
to it):

- ``accuracy``: spaces (only spaces) trimmed, the first character is the option's
  number; an answer starting with a newline or a tab is wrong (the ``_rc`` tasks instead
  rank the options by log-likelihood);
- ``hit rate@3``: the whole answer, trimmed and split on commas, its first three pieces
  that are whole numbers; the share of the gold items among them (the script means the
  first line, but splits the whole answer, so ``"1, 2\n3"`` reads ``[1]``);
- ``ndcg``: with a newline in the answer, its first line once newlines at either end are
  trimmed; split on commas, the whole numbers (at most as many as there are
  candidates), each worth its candidate's relevance weight; the ideal order is the
  weights sorted. A number repeated or outside the candidates earns nothing (the
  benchmark's script wraps 0 around to the last candidate and pays a repeat again, which
  can put NDCG above 1);
- ``micro f1``: the first line after leading newlines, split on commas, empty pieces
  dropped, each lower-cased and space-trimmed; gold entities lower-cased, not trimmed;
  true and false positives and false negatives summed over the task, then F1;
- ``rougel``: rouge-score's ROUGE-L F-measure with its Porter stemmer (its tokenizer
  keeps only ASCII letters and digits, so text in other scripts scores 0, as there);
- ``bleu``: sacrebleu's *corpus* BLEU over the one sentence (the first line once newlines
  at either end are trimmed; lower-cased, 13a tokens, exponential smoothing, no
  effective order: fewer than four words in common scores 0), / 100, as
  ``evaluate.load("sacrebleu")`` computes it; ``jp-bleu`` wants sacrebleu's MeCab
  tokenizer (``pip install sacrebleu[ja]``);
- ``sent-transformer`` and ``multilingual-sent-transformer`` compare sentence
  embeddings of a model this offline evaluation does not load: those questions are
  scored by ecomharness's ROUGE-L (every CJK character a token, as these questions are
  often not English), and the task warns once that it did so.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import defaultdict

import numpy as np
from lm_eval.api.registry import register_aggregation

from ecomharness.metrics.corpus import Aggregation, CountForm
from ecomharness.metrics.rouge import rouge_l

log = logging.getLogger("ecomharness_shopping_mmlu")
_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)


def _answer(results) -> str:
    value = results[0] if isinstance(results, (list, tuple)) and results else results
    return value if isinstance(value, str) else ""


def _whole_numbers(pieces) -> list[int]:
    """The pieces Python's ``int`` reads (it allows surrounding whitespace, a sign and
    leading zeros, as the benchmark's ``int(piece)`` does), in order."""
    out = []
    for piece in pieces:
        try:
            out.append(int(piece))
        except ValueError:
            continue
    return out


def accuracy(answer: str, gold) -> float:
    """1.0 when the answer, spaces trimmed, starts with the option's number ``gold``."""
    text = answer.strip(" ")
    return float(bool(text) and text[0] == str(gold))


def hit_rate_at_3(answer: str, gold: list) -> float:
    """The share of gold items among the first three whole numbers of the answer split on
    commas."""
    predicted = set(_whole_numbers(answer.strip().split(","))[:3])
    return len(predicted & set(gold)) / len(gold) if gold else 0.0


def ranked_candidates(answer: str) -> list[int]:
    """The candidate numbers an answer ranks, read as the benchmark reads them: with a
    newline, the first line once newlines at either end are trimmed; then the whole
    numbers of its comma-separated pieces."""
    if "\n" in answer:
        answer = answer.strip("\n").split("\n")[0]
    return _whole_numbers(answer.strip().split(","))


def ndcg(answer: str, weights: list[float]) -> float:
    """NDCG of the answer's order of candidates (numbered from 1)."""
    seen, dcg, position = set(), 0.0, 0
    for index in ranked_candidates(answer)[: len(weights)]:
        relevance = weights[index - 1] if 1 <= index <= len(weights) and index not in seen else 0.0
        seen.add(index)
        dcg += (2 ** relevance - 1) / math.log2(position + 2)
        position += 1
    ideal = sum((2 ** w - 1) / math.log2(i + 2) for i, w in enumerate(sorted(weights, reverse=True)))
    return dcg / ideal if ideal > 0 else 0.0


def entity_counts(answer: str, gold: list[str]) -> list[int]:
    """``[true positives, false positives, false negatives]`` of one answer's entities."""
    line = answer.lstrip("\n").split("\n")[0].strip(" ")
    # An empty piece is dropped before trimming: a piece of spaces stays, as an entity "".
    predicted = [piece.lower().strip(" ") for piece in line.split(",") if piece != ""]
    truth = [g.lower() for g in gold]
    hits = len(set(predicted) & set(truth))
    return [hits, len(predicted) - hits, len(truth) - hits]


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_stemmed(answer: str, reference: str) -> float:
    """rouge-score's ROUGE-L F-measure with the Porter stemmer (symmetric in its two
    arguments, so which side is the reference does not matter)."""
    return _rouge_scorer().score(reference, answer)["rougeL"].fmeasure


def bleu(answer: str, references: list[str], japanese: bool = False) -> float:
    """sacrebleu's corpus BLEU of the answer's first line as a corpus of one sentence,
    lower-cased, / 100."""
    import sacrebleu

    line = answer.strip("\n").split("\n")[0]
    try:
        # One reference stream per reference, as evaluate's sacrebleu metric passes them.
        score = sacrebleu.corpus_bleu([line], [[reference] for reference in references], lowercase=True,
                                      tokenize="ja-mecab" if japanese else "13a").score
    except Exception as exc:  # sacrebleu[ja] missing: a BLEU on other tokens would be another number
        raise RuntimeError(f"jp-bleu needs sacrebleu's MeCab tokenizer (pip install 'sacrebleu[ja]'): {exc}") from exc
    return score / 100


def question_value(doc: dict, answer: str):
    """The question's value under its metric: a number, or for ``micro f1`` its counts."""
    gold = json.loads(doc["gold_json"])
    metric = doc["metric"]
    if metric == "accuracy":
        return accuracy(answer, gold)
    if metric == "hit rate@3":
        return hit_rate_at_3(answer, gold)
    if metric == "ndcg":
        return ndcg(answer, [float(w) for w in gold])
    if metric == "micro f1":
        return entity_counts(answer, gold)
    references = gold if isinstance(gold, list) else [gold]
    if not references:
        return 0.0
    if metric in ("bleu", "jp-bleu"):
        return bleu(answer, references, japanese=metric == "jp-bleu")
    if metric == "rougel":
        return max(rouge_l_stemmed(answer, reference) for reference in references)
    _warn_once(metric, f"shopping_mmlu: questions scored by {metric} (sentence embeddings of a model this offline "
                       "evaluation does not load) are scored by ROUGE-L instead")
    return max(rouge_l(answer.strip(), reference) for reference in references)


def process_generation(doc, results) -> dict:
    """Every question of a skill, answered by generation; ``score`` rows for
    ``skill_score``."""
    value = question_value(doc, _answer(results))
    return {"score": [doc["task_name"], doc["metric"], value]}


def process_choice(doc, results) -> dict:
    """A multiple-choice question ranked by log-likelihood: accuracy, and its row of the
    skill score."""
    likelihoods = [r[0] if isinstance(r, (list, tuple)) else r for r in results]
    chosen = max(range(len(likelihoods)), key=likelihoods.__getitem__)
    correct = float(chosen == doc["gold_index"])
    return {"score": [doc["task_name"], "accuracy", correct], "acc": correct}


@register_aggregation("skill_score")
def skill_score(rows) -> float:
    """Each task's metric over its questions (micro F1 from summed counts, else the mean),
    then the unweighted mean over tasks: the benchmark's skill score."""
    by_task: dict[str, list] = defaultdict(list)
    for task, metric, value in rows:
        by_task[task].append((metric, value))
    scores = []
    for values in by_task.values():
        if values[0][0] == "micro f1":
            tp, fp, fn = (sum(v[1][i] for v in values) for i in range(3))
            scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        else:
            scores.append(sum(v[1] for v in values) / len(values))
    return sum(scores) / len(scores) if scores else 0.0


# --- the skill score as counts, for paired tests and bootstrap errors --------------------

_WIDTH = 5  # per benchmark task: value sum, questions, tp, fp, fn


def _skill_tasks(*sides) -> list[tuple[str, bool]]:
    """The benchmark tasks the rows of either side name, each with whether it is scored
    by micro F1, in one order for both sides."""
    found: dict[str, bool] = {}
    for rows in sides:
        for task, metric, _ in rows:
            found.setdefault(str(task), metric == "micro f1")
    return sorted(found.items())


def _skill_counts(rows, tasks: list[tuple[str, bool]]) -> np.ndarray:
    index = {task: k for k, (task, _) in enumerate(tasks)}
    out = np.zeros((len(rows), _WIDTH * len(tasks)))
    for i, (task, metric, value) in enumerate(rows):
        k = _WIDTH * index[str(task)]
        out[i, k + 1] = 1
        if metric == "micro f1":
            out[i, k + 2:k + 5] = [float(x) for x in value[:3]]
        else:
            out[i, k] = float(value)
    return out


def _skill_formula(tasks: list[tuple[str, bool]]):
    micro = np.array([is_micro for _, is_micro in tasks], dtype=bool)

    def formula(sums: np.ndarray) -> np.ndarray:
        blocks = sums.reshape(len(sums), len(tasks), _WIDTH)
        value, count, tp, fp, fn = (blocks[:, :, j] for j in range(_WIDTH))
        f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-300), 0.0)
        score = np.where(micro, f1, value / np.maximum(count, 1))
        present = count > 0  # a task no question of a resample belongs to is not averaged
        n = present.sum(axis=1)
        return np.where(n > 0, (score * present).sum(axis=1) / np.maximum(n, 1), 0.0)

    return formula


def skill_count_form(rows) -> CountForm:
    """``skill_score`` as a function of summed per-question counts (equal to it on every
    subset of the questions: a resample is one matrix product)."""
    tasks = _skill_tasks(rows)
    return CountForm(_skill_counts(rows, tasks), _skill_formula(tasks))


def skill_paired_forms(candidate, baseline) -> tuple[CountForm, CountForm]:
    """Both sides' skill-score count forms over the same benchmark tasks."""
    tasks = _skill_tasks(candidate, baseline)
    formula = _skill_formula(tasks)
    return CountForm(_skill_counts(candidate, tasks), formula), CountForm(_skill_counts(baseline, tasks), formula)


SKILL_SCORE = Aggregation("skill_score", skill_count_form, skill_paired_forms,
                          lm_eval="ecomharness_shopping_mmlu.metrics:skill_score")
