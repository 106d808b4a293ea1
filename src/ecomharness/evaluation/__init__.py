"""Evaluation: lm-eval runs over plugin tasks, reusable across checkpoints."""
