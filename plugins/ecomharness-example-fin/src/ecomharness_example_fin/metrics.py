"""Registers the ``sentiment_match`` metric with lm-eval on import."""

from lm_eval.api.registry import register_metric


@register_metric(metric="sentiment_match", higher_is_better=True, aggregation="mean")
def sentiment_match(references, predictions, **kwargs):
    """1.0 when the first word of the prediction equals the gold label, ignoring case."""
    gold = references[0].strip().casefold()
    words = predictions[0].strip().casefold().split()
    first = words[0].strip(".,;:!") if words else ""
    return 1.0 if first == gold else 0.0
