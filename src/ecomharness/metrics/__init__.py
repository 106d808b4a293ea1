"""Scoring that is right for Chinese and English text.

Plain functions live in ``text``, ``rouge``, ``classification``, ``extraction``,
``reading`` and ``finben``; ``lmeval`` adapts them to lm-eval (process_results,
aggregations, registered metric names).
"""
