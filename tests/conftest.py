"""Shared fixtures: a tiny local model, the repo paths, and a clean plugin manager."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Bloom + BPE tokenizer trained on the bundled samples (built once)."""
    from ecomharness.demo.run import _corpus_texts
    from ecomharness.demo.tiny import save_tiny_model

    extra = [
        "Headline: shares rise after profit beat\nSentiment (positive, negative or neutral): positive",
        "The quick brown fox jumps over the lazy dog 0123456789",
    ]
    out = tmp_path_factory.mktemp("tiny_model")
    return save_tiny_model(out, _corpus_texts() + extra, vocab_size=800, hidden_size=32, n_layer=2)


@pytest.fixture(autouse=True)
def _fresh_plugin_manager(monkeypatch):
    """Every test sees entry points as they are now, not as an earlier test left them."""
    from ecomharness.plugins import reset_plugin_manager

    monkeypatch.delenv("ECOMHARNESS_PLUGINS", raising=False)
    monkeypatch.delenv("ECOMHARNESS_TRACE_HOOKS", raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the installed ``ecomharness`` command; return the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN / "ecomharness"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
