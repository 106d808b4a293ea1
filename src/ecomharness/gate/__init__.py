"""Checkpoint gating: a policy of small checks over evaluation evidence -> a verdict."""
