"""Trainer callbacks, one per file; each config has ``enabled`` and ``build()``."""
