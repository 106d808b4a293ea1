"""The training recipe: YAML validated once into dataclasses; unknown keys are errors.

    # ecomharness train train/recipes/tiny_cpu.yaml     (paths relative to the working dir)
    mode: cpt                       # cpt | sft
    run_dir: runs/tiny              # checkpoints, eval/ledger.jsonl, logs
    model: {path: MODEL_DIR}        # or {init: {architecture: bloom, hidden_size: 64, ...}}
    tokenizer: TOKENIZER_DIR        # default: the model path
    data: {path: runs/data/x}       # a `data build` output (cpt) / instruction folders (sft)
    training: {max_steps: 30, save_steps: 10, learning_rate: 3.0e-3, ...}
    deepspeed: zero2_offload        # a file in train/deepspeed/ (name or path), or null
    eval:                           # see EvalSpec: an inline and an async profile
      inline: {tasks: [heldout_bpb, ecom_icl_rc], subset: 50}
      async: {tasks: [ecom_icl, general_icl], limit: 20}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecomharness.errors import UserError
from ecomharness.evaluation.checkpoint import EvalSettings
from ecomharness.evaluation.vllm_backend import VLLMArgs
from ecomharness.resources import bundled_path
from ecomharness.util import check_field_types, load_yaml_file, reject_unknown_keys

# The TrainingArguments a recipe may set, with their types. Everything else about the
# Trainer is fixed by the recipe runner (output_dir, save strategy, deepspeed, ...).
TRAINING_FIELDS: dict[str, type | tuple] = {
    "max_steps": int, "num_train_epochs": (int, float), "per_device_train_batch_size": int,
    "gradient_accumulation_steps": int, "learning_rate": float, "lr_scheduler_type": str,
    "warmup_steps": int, "warmup_ratio": float, "weight_decay": float, "adam_beta1": float,
    "adam_beta2": float, "adam_epsilon": float, "max_grad_norm": float, "save_steps": int,
    "save_total_limit": int, "logging_steps": int, "seed": int, "data_seed": int, "bf16": bool,
    "fp16": bool, "gradient_checkpointing": bool, "dataloader_num_workers": int, "report_to": (str, list),
    "optim": str, "use_cpu": bool,
}


@dataclass(frozen=True)
class ModelSpec:
    """A local checkpoint to start from, or an architecture to initialise (tests, demo)."""

    path: str | None = None
    init: dict[str, Any] | None = None
    dtype: str = "float32"


@dataclass(frozen=True)
class DataSpec:
    """CPT: ``path`` of a ``data build`` output. SFT: EcomInstruct folders."""

    path: str | None = None
    instruction_dirs: tuple[str, ...] = ()
    max_length: int = 512
    allow_tokenizer_mismatch: bool = False


@dataclass(frozen=True)
class EvalProfile:
    """One task set and how it is scored: the recipe's ``eval.inline`` (evaluated in the
    training process at each chosen save) or ``eval.async`` (evaluated by ``ecomharness
    watch RUN_DIR`` on the saved checkpoints, in another process or on another GPU).

    ``limit`` caps documents per task (a fixed prefix in lm-eval's order); ``subset``
    draws that many documents per task at random with ``seed`` instead (the same
    documents for every checkpoint, and not biased by how a file is ordered);
    ``samples`` pins exact document indices per task. At most one of the three.
    ``metadata`` is lm-eval's ``--metadata`` (``heldout_dir`` for the bits-per-byte
    tasks); ``every_n_saves`` (default: the eval section's) thins this profile's
    schedule, e.g. an expensive async suite on every 4th save and the final one.
    ``backend`` (async profile only): ``hf`` (lm-eval's transformers model) or ``vllm``
    (vLLM in its own environment, ``make vllm``), with the engine's arguments in
    ``vllm`` (``evaluation.vllm_backend.VLLMArgs``).
    """

    tasks: tuple[str, ...] = ()
    limit: int | None = None
    subset: int | None = None
    samples: dict[str, list[int]] | None = None
    num_fewshot: int | None = None
    batch_size: int = 8
    max_gen_toks: int | None = None
    include_path: tuple[str, ...] = ()
    seed: int = 1234
    metadata: dict[str, Any] = field(default_factory=dict)
    every_n_saves: int | None = None
    backend: str = "hf"
    vllm: VLLMArgs | None = None

    def settings(self) -> EvalSettings:
        """The fields that shape a score, as every ledger record keeps them (and whose
        key says whether a checkpoint was already evaluated on this task set)."""
        return EvalSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EvalSettings)})


PROFILES = ("inline", "async")
BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class EvalSpec:
    """Which task sets every checkpoint is evaluated on, when, and what follows.

        eval:
          inline: {tasks: [heldout_bpb, ecom_icl_rc], subset: 50}   # cheap, in the loop
          async: {tasks: [ecom_icl, general_icl], limit: 200}       # `ecomharness watch`
          every_n_saves: 1
          gate: default

    The older one-task-set form (``tasks``, ``limit``, ... beside ``mode: inline | async |
    off``) is read as the profile ``mode`` names. A checkpoint's records from both
    profiles are read together by the gate and the report (``ledger.checkpoint_records``).
    """

    inline: EvalProfile | None = None
    asynchronous: EvalProfile | None = None
    every_n_saves: int = 1
    on_start: bool = True
    on_failure: str = "continue"  # continue | stop
    gate: str | None = None
    data_parallel: bool = True  # ZeRO 0-2 with 2+ ranks: each rank evaluates a shard

    def profiles(self) -> dict[str, EvalProfile]:
        """The profiles the recipe sets, by their YAML name (``inline``, ``async``)."""
        found = {"inline": self.inline, "async": self.asynchronous}
        return {name: profile for name, profile in found.items() if profile is not None}

    def profile(self, name: str) -> EvalProfile | None:
        """The ``inline`` or ``async`` profile, or None when the recipe does not set it."""
        return self.profiles().get(name)

    def schedule(self, profile: EvalProfile) -> int:
        """Every how many saves ``profile`` evaluates."""
        return profile.every_n_saves or self.every_n_saves

    def to_raw(self) -> dict[str, Any]:
        """The section in its profile form (what the kept ``RUN_DIR/recipe.yaml`` holds)."""
        raw: dict[str, Any] = {k: getattr(self, k) for k in ("every_n_saves", "on_start", "on_failure", "gate",
                                                               "data_parallel")}
        for name, profile in self.profiles().items():
            raw[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(profile).items()
                         if v is not None}
        if not self.profiles():
            raw["mode"] = "off"
        return raw


@dataclass(frozen=True)
class LSSDConfig:
    """The recipe's ``loss.lssd`` block: Mix-CPT's logit-swap self-distillation. One
    config, validated when it is made, used as it is by ``train.lssd.build_loss``."""

    enabled: bool = False
    """Off: plain causal-LM cross-entropy."""
    weight: float = 0.5
    """lambda, the weight of the KL term (>= 0)."""
    temperature: float = 1.0
    """T, applied to both teacher and student logits (> 0)."""
    teacher: str = "frozen"
    """frozen: a copy of the starting model; self: the training model's detached logits."""

    def __post_init__(self):
        where = "loss.lssd"
        if self.teacher not in ("frozen", "self"):
            raise UserError(f"{where}.teacher: expected frozen or self, got {self.teacher!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or self.weight < 0:
            raise UserError(f"{where}.weight: expected a number >= 0, got {self.weight!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or self.temperature <= 0:
            raise UserError(f"{where}.temperature: expected a number > 0, got {self.temperature!r}")


@dataclass(frozen=True)
class TrainRecipe:
    """A whole training recipe, paths resolved against the recipe file."""

    run_dir: Path
    model: ModelSpec
    data: DataSpec
    mode: str = "cpt"
    tokenizer: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    deepspeed: str | None = None
    eval: EvalSpec = field(default_factory=EvalSpec)
    lssd: LSSDConfig = field(default_factory=LSSDConfig)
    source_file: Path | None = None

    def to_raw(self) -> dict[str, Any]:
        """The recipe as YAML data with every path absolute: re-parses to an equal recipe
        from any directory (``RUN_DIR/recipe.yaml`` is written this way)."""
        raw = {
            "mode": self.mode, "run_dir": str(self.run_dir),
            "model": {k: v for k, v in dataclasses.asdict(self.model).items() if v is not None},
            "data": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.data).items()
                     if v not in (None, ())},
            "tokenizer": self.tokenizer, "training": dict(self.training), "deepspeed": self.deepspeed,
            "eval": self.eval.to_raw(),
            "loss": {"lssd": dataclasses.asdict(self.lssd)},
        }
        return {k: v for k, v in raw.items() if v is not None}

    def deepspeed_config(self) -> dict | None:
        """The DeepSpeed config as a dict, or None for plain Trainer training."""
        if self.deepspeed is None:
            return None
        return json.loads(Path(self.deepspeed).read_text(encoding="utf-8"))


def _section(raw: dict, name: str, cls, where: str, convert=None):
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise UserError(f"{where}.{name}: expected a mapping")
    return _build(value, cls, f"{where}.{name}", convert)


def _build(value: dict, cls, where: str, convert=None):
    """``cls`` from a mapping: unknown keys and mistyped fields are errors naming ``where``."""
    reject_unknown_keys(value, {f.name for f in dataclasses.fields(cls)}, where)
    values = check_field_types(dict(value), cls, where)
    try:
        return cls(**(convert(values) if convert else values))
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from exc


def _resolve(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _deepspeed_path(name: str | None, base: Path, where: str) -> str | None:
    if name is None:
        return None
    candidates = [Path(name).expanduser(), base / name, bundled_path("train") / "deepspeed" / name,
                  bundled_path("train") / "deepspeed" / f"{name}.json"]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    known = sorted(p.stem for p in (bundled_path("train") / "deepspeed").glob("*.json"))
    raise UserError(f"{where}.deepspeed: {name!r} is neither a file nor one of {', '.join(known)}")


def _gate_path(name: str | None, base: Path, where: str) -> str | None:
    """A policy file, or the name of one in train/gates/ (``default``, ``forgetting``)."""
    if name is None:
        return None
    gates = bundled_path("train") / "gates"
    for candidate in (Path(name).expanduser(), base / name, gates / name, gates / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate.resolve())
    known = sorted(p.stem for p in gates.glob("*.yaml"))
    raise UserError(f"{where}.eval.gate: {name!r} is neither a file nor one of {', '.join(known)}")


# Lower bounds of TrainingArguments values (HF accepts many of these and fails later, or
# silently trains nothing: max_steps 0, a negative learning rate).
TRAINING_MINIMUM = {"max_steps": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
                    "save_steps": 1, "logging_steps": 1, "save_total_limit": 1, "warmup_steps": 0,
                    "dataloader_num_workers": 0, "seed": 0, "data_seed": 0, "learning_rate": 0.0,
                    "weight_decay": 0.0, "warmup_ratio": 0.0, "max_grad_norm": 0.0, "adam_epsilon": 0.0,
                    "adam_beta1": 0.0, "adam_beta2": 0.0}
TRAINING_BELOW = {"warmup_ratio": 1.0 + 1e-12, "adam_beta1": 1.0, "adam_beta2": 1.0}


def _check_training_values(training: dict, where: str) -> None:
    import math

    for key, value in training.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise UserError(f"{where}.{key}: expected a finite number, got {value!r}")
        if key in TRAINING_MINIMUM and value < TRAINING_MINIMUM[key]:
            raise UserError(f"{where}.{key}: must be at least {TRAINING_MINIMUM[key]:g}, got {value!r}")
        if key in TRAINING_BELOW and value >= TRAINING_BELOW[key]:
            raise UserError(f"{where}.{key}: must be below {TRAINING_BELOW[key]:g}, got {value!r}")
        if key == "num_train_epochs" and value <= 0:
            raise UserError(f"{where}.{key}: must be above 0, got {value!r}")


def _check_model_init(init: Any, where: str) -> None:
    """Sizes are whole numbers >= 1 and the attention heads divide the hidden size
    (otherwise the model fails at its first forward pass, with a shape error)."""
    if not isinstance(init, dict):
        raise UserError(f"{where}: expected a mapping of architecture settings")
    for key, value in init.items():
        if isinstance(value, int) and not isinstance(value, bool) and value < 1 and key.endswith(
                ("size", "layer", "layers", "head", "heads", "positions")):
            raise UserError(f"{where}.{key}: must be at least 1, got {value}")
    hidden = init.get("hidden_size", init.get("n_embd"))
    heads = init.get("n_head", init.get("num_attention_heads"))
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
        raise UserError(f"{where}: hidden_size {hidden} is not divisible by the {heads} attention heads")


def _parse_profile(raw: Any, where: str, base: Path, data_path: str | None) -> EvalProfile:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping with at least `tasks`")
    raw = dict(raw)
    if isinstance(raw.get("tasks"), str):  # `tasks: ecom_icl,general_icl`, as lm-eval takes it
        raw["tasks"] = [t.strip() for t in raw["tasks"].split(",") if t.strip()]
    if isinstance(raw.get("include_path"), str):
        raw["include_path"] = [raw["include_path"]]
    engine = raw.pop("vllm", None)
    profile = _build(raw, EvalProfile, where)
    if profile.backend not in BACKENDS:
        raise UserError(f"{where}.backend: expected one of {', '.join(BACKENDS)}, got {profile.backend!r}")
    if engine is not None:
        if profile.backend != "vllm":
            raise UserError(f"{where}.vllm: the engine's arguments need `backend: vllm` (this profile's backend is "
                            f"{profile.backend})")
        if not isinstance(engine, dict):
            raise UserError(f"{where}.vllm: expected a mapping of vLLM's arguments (tensor_parallel_size, "
                            "data_parallel_size, gpu_memory_utilization, max_model_len, dtype, enforce_eager)")
        profile = dataclasses.replace(profile, vllm=_build(engine, VLLMArgs, f"{where}.vllm").check(f"{where}.vllm"))
    for key, low in (("limit", 1), ("subset", 1), ("batch_size", 1), ("max_gen_toks", 1), ("num_fewshot", 0),
                     ("seed", 0), ("every_n_saves", 1)):
        value = getattr(profile, key)
        if value is not None and value < low:
            raise UserError(f"{where}.{key}: must be at least {low}, got {value}")
    chosen = [key for key in ("limit", "subset", "samples") if getattr(profile, key) is not None]
    if len(chosen) > 1:
        raise UserError(f"{where}: {' and '.join(chosen)} both choose documents; give one of limit, subset, samples")
    if not profile.tasks:
        raise UserError(f"{where}.tasks: name the tasks or groups to evaluate")
    metadata = dict(profile.metadata)
    # A data build with a held-out slice writes it beside the training data, where the
    # heldout_bpb tasks then find it without being told; the path goes into the kept
    # recipe, so `watch` (another process) evaluates the very same text. Only for a
    # profile naming held-out tasks: the path is part of the settings' key, and a
    # profile without them must keep its key whatever data it trains on.
    heldout = Path(data_path) / "heldout" if data_path else None
    names_heldout = any(str(task).startswith("heldout") for task in profile.tasks)
    if "heldout_dir" not in metadata and names_heldout and heldout is not None and heldout.is_dir():
        metadata["heldout_dir"] = str(heldout)
    elif isinstance(metadata.get("heldout_dir"), str):
        metadata["heldout_dir"] = _resolve(metadata["heldout_dir"], base)
    return dataclasses.replace(profile, metadata=metadata,
                               include_path=tuple(_resolve(p, base) for p in profile.include_path))


# The one-task-set form's keys, read as the profile that `mode` names.
_SINGLE_SET_KEYS = {f.name for f in dataclasses.fields(EvalProfile)} - {"every_n_saves"}


def _parse_eval(raw: Any, where: str, base: Path, data_path: str | None) -> EvalSpec:
    where = f"{where}.eval"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping")
    raw = dict(raw)
    mode = raw.pop("mode", None)
    if mode is False:  # YAML 1.1 reads a bare `off` as false
        mode = "off"
    single = {k: raw.pop(k) for k in list(raw) if k in _SINGLE_SET_KEYS}
    named = {k: raw.pop(k) for k in list(raw) if k in PROFILES}
    if single and named:
        raise UserError(f"{where}: give either one task set ({', '.join(sorted(single))} beside `mode`) or the "
                        f"profiles {', '.join(sorted(named))}, not both")
    if mode is not None and mode not in ("inline", "async", "off"):
        raise UserError(f"{where}.mode: expected inline, async or off, got {mode!r}")
    if named and mode not in (None, "off"):
        raise UserError(f"{where}.mode: with the inline / async profiles, `mode` may only be `off`")
    reject_unknown_keys(raw, {"every_n_saves", "on_start", "on_failure", "gate", "data_parallel"}, where)
    values = check_field_types(raw, EvalSpec, where)
    profiles: dict[str, EvalProfile] = {}
    if single:
        if not single.get("tasks") and mode != "off":
            raise UserError(f"{where}.tasks: name the tasks or groups to evaluate (or set mode: off)")
        if mode != "off":
            profiles[mode or "inline"] = _parse_profile(single, where, base, data_path)
    elif mode != "off":
        profiles = {name: _parse_profile(value, f"{where}.{name}", base, data_path) for name, value in named.items()}
    spec = EvalSpec(inline=profiles.get("inline"), asynchronous=profiles.get("async"), **values)
    if spec.inline is not None and spec.inline.backend != "hf":
        # `watch --profile inline --backend vllm` may still evaluate it on vLLM afterwards.
        raise UserError(f"{where}.inline.backend: the inline profile is evaluated in the training process, on "
                        f"the model being trained (hf); vllm is for eval.async (`ecomharness watch`)")
    if spec.on_failure not in ("continue", "stop"):
        raise UserError(f"{where}.on_failure: expected continue or stop, got {spec.on_failure!r}")
    if spec.every_n_saves < 1:
        raise UserError(f"{where}.every_n_saves: must be at least 1")
    return dataclasses.replace(spec, gate=_gate_path(spec.gate, base, where.rsplit(".eval", 1)[0]))


def parse_recipe(raw: Any, where: str = "recipe", base: Path | None = None) -> TrainRecipe:
    """Validate a parsed recipe mapping."""
    base = base or Path.cwd()
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping at the top level")
    reject_unknown_keys(raw, {f.name for f in dataclasses.fields(TrainRecipe)} - {"source_file", "lssd"} | {"loss"}, where)
    mode = raw.get("mode", "cpt")
    if mode not in ("cpt", "sft"):
        raise UserError(f"{where}.mode: expected cpt or sft, got {mode!r}")
    if "run_dir" not in raw:
        raise UserError(f"{where}: missing required key 'run_dir'")
    model = _section(raw, "model", ModelSpec, where)
    if (model.path is None) == (model.init is None):
        raise UserError(f"{where}.model: give exactly one of 'path' (a checkpoint) or 'init' (an architecture)")
    if model.dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"{where}.model.dtype: expected float32, bfloat16 or float16, got {model.dtype!r}")
    if model.init is not None:
        _check_model_init(model.init, f"{where}.model.init")
    model = dataclasses.replace(model, path=_resolve(model.path, base))
    data = _section(raw, "data", DataSpec, where)
    data = dataclasses.replace(data, path=_resolve(data.path, base),
                               instruction_dirs=tuple(_resolve(d, base) for d in data.instruction_dirs))
    if mode == "cpt" and not data.path:
        raise UserError(f"{where}.data.path: a CPT recipe needs a `data build` output")
    if mode == "sft" and not data.instruction_dirs:
        raise UserError(f"{where}.data.instruction_dirs: an SFT recipe needs EcomInstruct folders")
    training = raw.get("training") or {}
    if not isinstance(training, dict):
        raise UserError(f"{where}.training: expected a mapping")
    reject_unknown_keys(training, TRAINING_FIELDS, f"{where}.training")
    for key, value in training.items():
        kinds = TRAINING_FIELDS[key] if isinstance(TRAINING_FIELDS[key], tuple) else (TRAINING_FIELDS[key],)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise UserError(f"{where}.training.{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    _check_training_values(training, f"{where}.training")
    evals = _parse_eval(raw.get("eval"), where, base, data.path)
    loss = raw.get("loss") or {}
    if not isinstance(loss, dict):
        raise UserError(f"{where}.loss: expected a mapping")
    reject_unknown_keys(loss, {"lssd"}, f"{where}.loss")
    try:
        lssd = _section(loss, "lssd", LSSDConfig, f"{where}.loss")
    except UserError as exc:  # the config's own checks name the field from loss.lssd on
        raise UserError(f"{where}.{exc}" if str(exc).startswith("loss.lssd.") else str(exc)) from exc
    return TrainRecipe(
        lssd=lssd,
        run_dir=Path(_resolve(str(raw["run_dir"]), base)),
        model=model,
        data=data,
        mode=mode,
        tokenizer=_resolve(raw.get("tokenizer"), base),
        training=dict(training),
        deepspeed=_deepspeed_path(raw.get("deepspeed"), base, where),
        eval=evals,
    )


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``["training.max_steps=10", "eval.tasks=[ecom_icl]"]``: set dotted keys (values
    parsed as YAML), as torchtune's command line does."""
    raw = json.loads(json.dumps(raw))
    for item in overrides:
        dotted, sep, text = item.partition("=")
        if not sep or not dotted:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. training.max_steps=10")
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part!r} is not a mapping")
        node[leaf] = yaml.safe_load(text)
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> TrainRecipe:
    """Read and validate a recipe file, with ``--set`` overrides applied first."""
    path = Path(path).expanduser()
    raw = load_yaml_file(path, "recipe")
    if overrides:
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping at the top level")
        raw = apply_overrides(raw, overrides)
    # Relative paths resolve against the working directory: bundled recipes are
    # templates used from anywhere (unlike data recipes, which sit beside their data).
    recipe = parse_recipe(raw, where=str(path), base=Path.cwd())
    return dataclasses.replace(recipe, source_file=path.resolve())
