"""The pieces a training run is built from: tokenizer, model, dataset, collator."""

from __future__ import annotations

from pathlib import Path

from ecomharness.data import layout
from ecomharness.errors import UserError
from ecomharness.train.recipe import TrainRecipe

ARCHITECTURES = {"bloom": ("BloomConfig", "BloomForCausalLM"), "llama": ("LlamaConfig", "LlamaForCausalLM")}


def load_tokenizer(recipe: TrainRecipe):
    """The recipe's tokenizer (default: the model's); a pad token is required up front,
    so that nothing later (lm-eval) adds one and changes the vocabulary."""
    from transformers import AutoTokenizer

    source = recipe.tokenizer or recipe.model.path
    if source is None:
        raise UserError("the recipe needs `tokenizer` when the model is initialised from `init`")
    if not Path(source).exists():
        raise UserError(f"tokenizer: {source} does not exist")
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(recipe: TrainRecipe, tokenizer):
    """A local checkpoint, or a new model of ``model.init`` (seeded by the training seed)."""
    import torch
    import transformers

    dtype = getattr(torch, recipe.model.dtype)
    if recipe.model.path is not None:
        if not Path(recipe.model.path).exists():
            raise UserError(f"model.path: {recipe.model.path} does not exist")
        return transformers.AutoModelForCausalLM.from_pretrained(recipe.model.path, dtype=dtype)
    init = dict(recipe.model.init)
    architecture = init.pop("architecture", "bloom")
    if architecture not in ARCHITECTURES:
        raise UserError(f"model.init.architecture: expected one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    config_name, model_name = ARCHITECTURES[architecture]
    try:
        config = getattr(transformers, config_name)(
            vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **init)
    except TypeError as exc:
        raise UserError(f"model.init: {exc}") from exc
    torch.manual_seed(int(recipe.training.get("seed", 42)))
    return getattr(transformers, model_name)(config).to(dtype)


def cpt_dataset(recipe: TrainRecipe):
    """The packed blocks of a ``data build`` output."""
    import datasets

    folder = layout.dataset_dir(recipe.data.path)
    if folder is None:
        raise UserError(f"data.path: {recipe.data.path} is not a `data build` output "
                        f"(no {layout.DATASET}/{layout.STATE})")
    return datasets.load_from_disk(str(folder))


def build_stats_file(recipe: TrainRecipe) -> Path | None:
    """The ``stats.json`` of the recipe's ``data build`` output (``data.path`` may name
    the output or its ``dataset/`` folder), or None."""
    return layout.stats_file(recipe.data.path)


def training_contamination(recipe: TrainRecipe) -> dict[str, dict]:
    """What the run's training data holds of each task's test documents, from its build's
    ``stats.json`` (``decontaminate``): per task the documents found in the corpus, what
    the build did with the records holding them (``dropped``, so ``share`` in training is
    0, or ``flag``: kept, and ``share`` is the found share), and the sources that held
    them. Empty when the build did not check; ledger records then carry none."""
    import json

    if getattr(recipe.data, "path", None) is None:  # SFT data, or no data build: nothing was checked
        return {}
    stats_file = build_stats_file(recipe)
    if stats_file is None:
        return {}
    try:
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{stats_file}: not a readable build report ({exc})") from exc
    block = stats.get("contamination") if isinstance(stats, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("tasks"), dict):
        return {}
    sources = sorted(name for name, n in (block.get("records") or {}).items() if n)
    kept = block.get("action") == "flag"
    return {task: {"found": row["found"], "documents": row["documents"], "share": row["share"] if kept else 0.0,
                   "action": block.get("action"), "sources": sources, "build": str(stats_file.parent)}
            for task, row in block["tasks"].items() if not task.startswith("heldout:")}


def cpt_collator(features: list[dict]) -> dict:
    """Stack fixed-length blocks; padding (attention 0) is not a training target."""
    import torch

    input_ids = torch.tensor([f["input_ids"] for f in features], dtype=torch.long)
    attention = torch.tensor([f["attention_mask"] for f in features], dtype=torch.long)
    labels = input_ids.masked_fill(attention == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def sft_dataset(recipe: TrainRecipe, tokenizer):
    """EcomInstruct folders in the EcomGPT instruction layout, loss on the response only."""
    import datasets

    from ecomharness.formats.ecominstruct import instruction_sample, read_ecominstruct

    rows = []
    for folder in recipe.data.instruction_dirs:
        split = "train" if (Path(folder) / "train.json").is_file() else "test"
        for doc in read_ecominstruct(folder, split=split).docs:
            prompt, response = instruction_sample(doc)
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            ids = (prompt_ids + response_ids)[: recipe.data.max_length]
            labels = ([-100] * len(prompt_ids) + response_ids)[: recipe.data.max_length]
            if any(label != -100 for label in labels):  # a response cut off entirely teaches nothing
                rows.append({"input_ids": ids, "labels": labels})
    if not rows:
        raise UserError("data.instruction_dirs: no usable instruction records (responses cut off by max_length?)")
    return datasets.Dataset.from_list(rows)


def sft_collator(pad_id: int):
    """Right-pad a batch of instruction samples; padding is masked out of the loss."""
    import torch

    def collate(features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            attention[row, :n] = 1
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}

    return collate
