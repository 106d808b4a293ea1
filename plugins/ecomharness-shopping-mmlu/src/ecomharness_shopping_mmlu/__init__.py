"""Shopping MMLU (Amazon KDD Cup 2024) as lm-eval tasks, an ecomharness plugin."""

__version__ = "0.1.0"
