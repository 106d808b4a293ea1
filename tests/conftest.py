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
    from ecomharness.demo.run import task_sample_texts
    from ecomharness.demo.tiny import save_tiny_model

    extra = [
        "Headline: shares rise after profit beat\nSentiment (positive, negative or neutral): positive",
        "The quick brown fox jumps over the lazy dog 0123456789",
    ]
    out = tmp_path_factory.mktemp("tiny_model")
    return save_tiny_model(out, task_sample_texts() + extra, vocab_size=800, hidden_size=32, n_layer=2)


def corpus_with_tokenizer(root: Path, n_products: int, n_general: int, seed: int, vocab_size: int,
                          extra_texts=()) -> list[dict]:
    """The demo's synthetic corpus under ``root/raw`` and a tokenizer trained on it (and
    ``extra_texts``) in ``root/tok``; returns the data recipe's sources."""
    from ecomharness.testing.corpus import corpus_sources, write_corpus
    from ecomharness.demo.tiny import train_tokenizer

    paths = write_corpus(root / "raw", n_products=n_products, n_general=n_general, seed=seed)
    texts = [line for p in paths.values() for line in p.read_text(encoding="utf-8").splitlines()]
    train_tokenizer(texts + list(extra_texts), vocab_size=vocab_size, out_dir=root / "tok")
    return corpus_sources(paths)


@pytest.fixture(scope="session")
def built_cpt_data(tmp_path_factory):
    """A small `data build` output and its tokenizer."""
    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import parse_recipe as parse_data_recipe
    from ecomharness.demo.run import task_sample_texts

    root = tmp_path_factory.mktemp("train_data")
    sources = corpus_with_tokenizer(root, n_products=400, n_general=800, seed=3, vocab_size=800,
                                    extra_texts=task_sample_texts())
    # Two shards: every training test reads a sharded build, as a Ray-built one is.
    recipe = parse_data_recipe({"output": str(root / "data"), "tokenizer": str(root / "tok"), "seq_len": 64,
                                "sources": sources, "shards": 2})
    build_dataset(recipe, log=lambda *_: None)
    return root


@pytest.fixture(autouse=True)
def _fresh_plugin_manager(monkeypatch):
    """Every test sees entry points as they are now, not as an earlier test left them."""
    from ecomharness.plugins import reset_plugin_manager
    from ecomharness.registry import (aggregations, data_sources, filters, gate_rules, mixers, record_formats,
                                      selectors, topic_classifiers)

    monkeypatch.delenv("ECOMHARNESS_PLUGINS", raising=False)
    monkeypatch.delenv("ECOMHARNESS_TRACE_HOOKS", raising=False)
    registries = (record_formats, data_sources, filters, mixers, gate_rules, selectors, topic_classifiers,
                  aggregations)
    reset_plugin_manager()
    for registry in registries:
        registry.reset()
    yield
    reset_plugin_manager()
    for registry in registries:
        registry.reset()


@pytest.fixture
def offline_task_data(monkeypatch):
    """Task data resolved with no user directories, no hub, and no earlier records."""
    import ecomharness.tasks.data as taskdata

    for var in ("ECOMHARNESS_ECOMINSTRUCT_DIR", "ECOMHARNESS_FINBEN_DIR", "ECOMHARNESS_GENERAL_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ECOMHARNESS_OFFLINE", "1")
    monkeypatch.setattr(taskdata, "_HUB_STATE", {})
    taskdata.DATA_SOURCES.clear()


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


def make_plugin_on_path(root: Path, name: str, task_files: dict[str, str]) -> dict:
    """Create an importable plugin with a real entry point (a dist-info) under ``root``.

    Returns the environment to pass to ``run_cli`` so that a subprocess discovers it.
    """
    module = root / f"{name}.py"
    tasks = root / f"{name}_tasks"
    tasks.mkdir(parents=True)
    for file_name, text in task_files.items():
        (tasks / file_name).write_text(text, encoding="utf-8")
    module.write_text(
        "from pathlib import Path\n"
        "from ecomharness import hookimpl\n\n"
        "@hookimpl\n"
        "def ecomharness_task_dirs():\n"
        f"    return [Path(__file__).parent / {tasks.name!r}]\n",
        encoding="utf-8",
    )
    dist = root / f"{name}-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text(f"[ecomharness]\n{name} = {name}\n")
    pythonpath = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": pythonpath}
