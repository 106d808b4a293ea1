"""Documents per second of each data-selection scorer on this machine.

    .venv/bin/python benchmarks/selection/bench_selection.py [--docs 1000] [--doc-chars 400] [--corpus FILE.jsonl]

The corpus is the demo generator's product descriptions, reviews and general paragraphs
(Chinese and English mixed) joined into documents of about ``--doc-chars`` characters
(a length drawn uniformly from half to 1.5 times that), or the ``text`` lines of
``--corpus``. Proxy and encoder
models are built locally at random initialisation (speed does not depend on the
weights); their parameter counts are printed with the figures. Each scorer scores the
same documents once, cold; then the score cache's read rate is measured on the same
documents (a re-run of a selection with another fraction pays only that).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def corpus(docs: int, doc_chars: int, path: str | None) -> list[str]:
    """``docs`` texts: from ``path`` (JSON Lines with ``text``) or the demo generator."""
    if path:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["text"] for line in lines if line.strip()][:docs]
    from ecomharness.testing.corpus import write_corpus

    root = Path(tempfile.mkdtemp(prefix="bench-select-"))
    pieces_needed = docs * doc_chars // 40
    paths = write_corpus(root, n_products=pieces_needed // 3, n_general=pieces_needed // 3, seed=0)
    texts = []
    for name, file in sorted(paths.items()):
        field = "text" if name.startswith("general") else "description" if name.startswith("descriptions") else \
            "review" if name.startswith("reviews") else None
        if field is None:
            continue
        texts += [json.loads(line)[field] for line in file.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    rng.shuffle(texts)  # mix sources and languages, the same way every run
    out, pieces = [], iter(texts)
    while len(out) < docs:
        target, doc = rng.randint(doc_chars // 2, doc_chars * 3 // 2), ""
        while len(doc) < target:
            doc += next(pieces) + "\n"
        out.append(doc)
    return out


def models(root: Path, texts: list[str]) -> dict[str, Path]:
    """Local proxy causal LMs and an encoder, with one tokenizer trained on the corpus."""
    import torch
    from transformers import BertConfig, BertModel, BloomConfig, BloomForCausalLM

    from ecomharness.demo.tiny import train_tokenizer

    tokenizer = train_tokenizer(texts[:2000], vocab_size=4000, out_dir=root / "tok")
    torch.manual_seed(0)
    out = {}
    for name, hidden, layers in (("bloom-h64-l2", 64, 2), ("bloom-h512-l8", 512, 8)):
        config = BloomConfig(vocab_size=len(tokenizer), hidden_size=hidden, n_layer=layers, n_head=8,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        BloomForCausalLM(config).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = root / name
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(root / "bert-h256-l4")
    tokenizer.save_pretrained(root / "bert-h256-l4")
    out["bert-h256-l4"] = root / "bert-h256-l4"
    return out


class FileOrder:
    """The baseline for length-sorted batching: batches taken in corpus order (each
    batch scored alone, so the scorer cannot sort across batches)."""

    def __init__(self, scorer, batch_size: int):
        self.scorer, self.batch_size, self.model = scorer, batch_size, scorer.model
        self.config = {**scorer.config, "baseline": "file order"}

    def score(self, texts):
        import numpy as np

        return np.concatenate([self.scorer.score(texts[b : b + self.batch_size])
                               for b in range(0, len(texts), self.batch_size)])


def main() -> None:
    """Print one row per scorer: documents, seconds, documents/s, model parameters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--doc-chars", type=int, default=400)
    parser.add_argument("--corpus", default=None, help="JSON Lines file with a text field")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import torch

    from ecomharness.select.cache import ScoreCache
    from ecomharness.select.scorers import PerplexityScorer, PosEntropyScorer, SimilarityScorer
    from ecomharness.select.stage import embedder_from, task_texts

    texts = corpus(args.docs, args.doc_chars, args.corpus)
    chars = sum(len(t) for t in texts) / len(texts)
    root = Path(tempfile.mkdtemp(prefix="bench-select-models-"))
    paths = models(root, texts)
    tasks = task_texts(["ecom_icl"])
    print(f"{len(texts)} documents, {chars:.0f} characters on average; task texts: {len(tasks)} (ecom_icl few-shot); "
          f"torch threads {torch.get_num_threads()}")
    scorers = [
        ("similarity tfidf (chars)", lambda: SimilarityScorer(tasks)),
        ("similarity tfidf (jieba)", lambda: SimilarityScorer(tasks, embedder_from({"zh": "jieba"}))),
        ("similarity encoder bert-h256-l4", lambda: SimilarityScorer(
            tasks, embedder_from({"path": str(paths["bert-h256-l4"]), "batch_size": args.batch_size}))),
        ("perplexity bloom-h64-l2", lambda: PerplexityScorer(str(paths["bloom-h64-l2"]), args.batch_size, 512)),
        ("perplexity bloom-h64-l2, file order", lambda: FileOrder(
            PerplexityScorer(str(paths["bloom-h64-l2"]), args.batch_size, 512), args.batch_size)),
        ("perplexity bloom-h512-l8", lambda: PerplexityScorer(str(paths["bloom-h512-l8"]), args.batch_size, 512)),
        ("pos_entropy", PosEntropyScorer),
    ]
    print(f"{'scorer':38} {'params':>10} {'docs':>6} {'seconds':>8} {'docs/s':>9} {'cached docs/s':>14}")
    for name, make in scorers:
        scorer = make()
        model = getattr(scorer, "model", None) or getattr(getattr(scorer, "embedder", None), "model", None)
        params = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M" if model is not None else "-"
        if name == "pos_entropy":
            scorer.score(texts[:1])  # jieba loads its dictionary on first use: not a per-document cost
        cache = ScoreCache(root / "cache")
        start = time.perf_counter()
        cache.get_or_score(texts, scorer)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        cache.get_or_score(texts, scorer)
        warm = time.perf_counter() - start
        print(f"{name:38} {params:>10} {len(texts):>6} {cold:>8.2f} {len(texts) / cold:>9.1f} "
              f"{len(texts) / warm:>14.0f}")


if __name__ == "__main__":
    main()
