"""Two reference "models" that check task wiring, registered with lm-eval by name.

``ecom-oracle`` answers every request with its document's gold output, so a correctly
wired task scores the maximum of every metric; ``ecom-empty`` answers nothing, so
every metric is at its floor. Use them to test a new task before spending GPU hours:

    ecomharness eval --model ecom-oracle --tasks ecom_icl

The gold output is the document's ``target_text`` field (every document our readers
and bundled samples produce has one). A task whose documents lack it cannot be checked
this way, and the oracle says so rather than guessing.
"""

from __future__ import annotations

import lm_eval.models  # noqa: F401 - lm-eval fills its model registry only while it is empty
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ecomharness.errors import UserError
from ecomharness.metrics.text import normalize_label

# Log-likelihoods the oracle reports: the gold continuation is certain, others are not.
_GOLD_LOGPROB = 0.0
_OTHER_LOGPROB = -100.0


def _gold_text(instance) -> str:
    doc = instance.doc
    if not isinstance(doc, dict) or "target_text" not in doc:
        # Input, not a crash: the task's documents do not say their gold output.
        raise UserError(
            f"task {instance.task_name!r}: document {instance.doc_id} has no 'target_text', "
            "so the reference models cannot know its gold answer"
        )
    return str(doc["target_text"])


class _ReferenceLM(LM):
    def __init__(self, **kwargs):  # accepts and ignores lm-eval's batch_size/device/...
        super().__init__()

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        """Certain of the gold continuation, and of nothing else."""
        return [
            (_GOLD_LOGPROB if self._is_gold(r) else _OTHER_LOGPROB, self._is_gold(r))
            for r in requests
        ]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        """Perplexity tasks carry no gold to be certain of: report a fixed value."""
        return [_OTHER_LOGPROB for _ in requests]

    def _is_gold(self, request) -> bool:
        return False

    def generate_until(self, requests, disable_tqdm: bool = False):
        """Subclasses answer."""
        raise NotImplementedError


@register_model("ecom-oracle")
class OracleLM(_ReferenceLM):
    """Answers with each document's gold output (``doc["target_text"]``)."""

    def _is_gold(self, request) -> bool:
        # Folded as the classification metric folds labels: a choice "negative" is the
        # gold answer "Negative" (FinBen's FiQA-SA writes them so).
        continuation = request.args[1]
        return normalize_label(continuation) == normalize_label(_gold_text(request))

    def generate_until(self, requests, disable_tqdm: bool = False):
        """The gold output of each request's document."""
        return [_gold_text(r) for r in requests]


@register_model("ecom-empty")
class EmptyLM(_ReferenceLM):
    """Answers every generation with the empty string and prefers no choice."""

    def generate_until(self, requests, disable_tqdm: bool = False):
        """An empty answer for every request."""
        return ["" for _ in requests]
