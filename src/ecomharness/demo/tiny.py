"""Build a tiny tokenizer and a tiny Bloom model locally, with nothing downloaded.

Used by the demo and by tests. The tokenizer isolates every CJK character before
byte-level BPE: without that, BPE merges whole Chinese template phrases into single
tokens, which makes generation and scoring meaningless.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

# CJK Unified Ideographs (+ extension A) and CJK punctuation / full-width forms.
CJK_PATTERN = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, out_dir: Path | None = None):
    """Train a byte-level BPE tokenizer that keeps each CJK character a token of its own.

    Returns a ``PreTrainedTokenizerFast`` with bos/eos/pad/unk set (so lm-eval never
    adds a pad token and changes the vocabulary). Saved to ``out_dir`` when given.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CJK_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def build_bloom(tokenizer, hidden_size: int = 64, n_layer: int = 2, n_head: int = 4, seed: int = 0):
    """A randomly initialised ``BloomForCausalLM`` sized for CPU tests, seeded."""
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(seed)
    config = BloomConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BloomForCausalLM(config)


def save_tiny_model(out_dir: Path, texts: Iterable[str], vocab_size: int = 2000, **model_kwargs) -> Path:
    """Train a tokenizer on ``texts``, build a tiny Bloom, and save both to ``out_dir``.

    Writes ``ecomharness_model.json`` last, as a completion marker: a directory without
    it is incomplete and is rebuilt by callers that cache models.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, out_dir=out_dir)
    model = build_bloom(tokenizer, **model_kwargs)
    model.save_pretrained(str(out_dir))
    marker = {"architecture": "bloom", "vocab_size": len(tokenizer), **model_kwargs}
    (out_dir / "ecomharness_model.json").write_text(json.dumps(marker, indent=2))
    return out_dir
