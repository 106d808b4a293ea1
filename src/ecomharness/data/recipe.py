"""The data recipe: YAML validated once, into dataclasses, with every error naming its field.

    # ecomharness data build train/data/mixcpt_raw.yaml
    output: runs/data/example          # relative paths resolve against this file
    tokenizer: path/to/tokenizer        # a local directory with a fast tokenizer
    seq_len: 1024
    seed: 0
    on_error: raise                     # or skip: bad records are counted, not fatal
    sources:
      - name: products
        kind: domain                    # domain | general
        language: zh
        format: jsonl                   # jsonl | parquet | csv | hf_disk | hub
        path: raw/products.jsonl        # a file, a directory or a glob
        key: product_id                 # links records of different sources
        template: "{{ title }}\\n{{ attributes }}"
        filters: [{name: length, min_chars: 20}]   # optional: ecomharness.data.filters
    mixer: {name: graph, min_records: 2, max_records: 8, separator: "\\n"}
    ratio: {general_to_domain: 2.0, general_languages: {zh: 1, en: 1}}
    select: {...}                       # optional: ecomharness.select.stage
    curriculum: {by: perplexity, model: path/to/proxy, stages: 3}   # optional
    heldout: {share: 0.01, max_documents: 1000}   # optional: ecomharness.data.heldout
    dedup: {exact: true}                # optional: ecomharness.data.dedup
    decontaminate: {tasks: [ecom_icl]}  # optional: ecomharness.data.contamination
    shards: 1                           # output files; samples go to shards by a seeded hash
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.data.contamination import ContaminationSpec, parse_contamination
from ecomharness.data.dedup import DedupSpec, parse_dedup
from ecomharness.data.filters import FilterSpec, parse_filters
from ecomharness.data.heldout import HeldoutSpec, parse_heldout
from ecomharness.select.curriculum import CurriculumSpec, parse_curriculum
from ecomharness.select.stage import SelectionSpec, parse_selection
from ecomharness.util import check_value, load_yaml_file, reject_unknown_keys

SOURCE_KINDS = ("domain", "general")
ON_ERROR = ("raise", "skip")


@dataclass(frozen=True)
class SourceSpec:
    """One raw corpus."""

    name: str
    kind: str
    language: str
    format: str
    path: str
    template: str = "{{ text }}"
    key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    filters: tuple[FilterSpec, ...] = ()  # see ecomharness.data.filters


@dataclass(frozen=True)
class MixerSpec:
    """How domain records become samples; ``options`` go to the mixer as they are."""

    name: str = "graph"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RatioSpec:
    """Token ratios: general:domain, and the language shares inside general."""

    general_to_domain: float | None = 2.0
    general_languages: dict[str, float] = field(default_factory=lambda: {"zh": 1.0, "en": 1.0})


@dataclass(frozen=True)
class DataRecipe:
    """A whole ``data build`` recipe, paths resolved against the recipe file."""

    output: Path
    tokenizer: str
    sources: tuple[SourceSpec, ...]
    seq_len: int = 1024
    seed: int = 0
    on_error: str = "raise"
    num_proc: int = 1
    batch_size: int = 10_000
    shards: int = 1  # output shard files; part of the content (each shard's last block is padded)
    mixer: MixerSpec = field(default_factory=MixerSpec)
    ratio: RatioSpec = field(default_factory=RatioSpec)
    select: SelectionSpec | None = None  # see ecomharness.select.stage
    curriculum: CurriculumSpec | None = None  # see ecomharness.select.curriculum
    heldout: HeldoutSpec | None = None  # see ecomharness.data.heldout
    dedup: DedupSpec | None = None  # see ecomharness.data.dedup
    decontaminate: ContaminationSpec | None = None  # see ecomharness.data.contamination
    source_file: Path | None = None

    def fingerprint(self) -> str:
        """A hash of every setting that shapes the output (not of the data itself)."""
        payload = dataclasses.asdict(self)
        payload.pop("source_file", None)
        payload.pop("output", None)
        for optional in ("heldout", "dedup", "decontaminate"):  # recipes without one keep their fingerprint
            if payload.get(optional) is None:
                payload.pop(optional, None)
        if payload.get("shards") == 1:
            payload.pop("shards")
        for source in payload["sources"]:  # recipes without filters keep their fingerprint
            if not source.get("filters"):
                source.pop("filters", None)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Far above any context length trained today; a larger value is a typo (1e9) that would
# make one block hold the whole corpus.
MAX_SEQ_LEN = 1 << 20


def _typed(mapping: dict, key: str, kind, where: str, default=dataclasses.MISSING):
    """``mapping[key]`` checked against ``kind`` (``util.check_value``); a missing key
    takes ``default``, or is an error when there is none."""
    if key not in mapping:
        if default is dataclasses.MISSING:
            raise UserError(f"{where}: missing required key {key!r}")
        return default
    return check_value(mapping[key], kind, f"{where}.{key}")


def _source(raw: Any, index: int, where: str, base: Path) -> SourceSpec:
    at = f"{where}.sources[{index}]"
    if not isinstance(raw, dict):
        raise UserError(f"{at}: expected a mapping")
    reject_unknown_keys(raw, {f.name for f in dataclasses.fields(SourceSpec)}, at)
    kind = _typed(raw, "kind", str, at)
    if kind not in SOURCE_KINDS:
        raise UserError(f"{at}.kind: expected one of {SOURCE_KINDS}, got {kind!r}")
    fmt = _typed(raw, "format", str, at)
    path = _typed(raw, "path", str, at)
    if fmt != "hub" and not Path(path).is_absolute():
        path = str((base / path).resolve())
    key = raw.get("key")
    if key is not None and not isinstance(key, str):
        raise UserError(f"{at}.key: expected a field name, got {key!r}")
    return SourceSpec(
        name=_typed(raw, "name", str, at),
        kind=kind,
        language=_typed(raw, "language", str, at),
        format=fmt,
        path=path,
        template=_typed(raw, "template", str, at, "{{ text }}"),
        key=key,
        options=_typed(raw, "options", dict, at, {}),
        filters=parse_filters(raw.get("filters"), f"{at}.filters"),
    )


PATH_KEYS = {"model", "file", "path", "cache_dir"}


def _resolve_paths(value: Any, base: Path) -> Any:
    """Paths inside ``select`` and ``curriculum`` (proxy models, task files, encoder
    folders, cache) resolve against the recipe file, as source paths do: a relative one
    is taken from there when it exists there (a cache directory always is)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in PATH_KEYS and isinstance(item, str) and item and not Path(item).expanduser().is_absolute():
                candidate = (base / item).resolve()
                out[key] = str(candidate) if key == "cache_dir" or candidate.exists() else item
            else:
                out[key] = _resolve_paths(item, base)
        return out
    if isinstance(value, list):
        return [_resolve_paths(item, base) for item in value]
    return value


def parse_recipe(raw: Any, where: str = "recipe", base: Path | None = None) -> DataRecipe:
    """Validate a parsed recipe mapping; ``base`` is the directory relative paths use."""
    base = base or Path.cwd()
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping at the top level")
    allowed = {f.name for f in dataclasses.fields(DataRecipe)} - {"source_file"}
    reject_unknown_keys(raw, allowed, where)
    sources_raw = _typed(raw, "sources", list, where)
    if not sources_raw:
        raise UserError(f"{where}.sources: at least one source is needed")
    sources = tuple(_source(s, i, where, base) for i, s in enumerate(sources_raw))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UserError(f"{where}.sources: names must be unique, got {names}")
    mixer_raw = dict(_typed(raw, "mixer", dict, where, {}))
    mixer = MixerSpec(name=str(mixer_raw.pop("name", "graph")), options=mixer_raw)
    ratio_raw = _typed(raw, "ratio", dict, where, {})
    reject_unknown_keys(ratio_raw, {"general_to_domain", "general_languages"}, f"{where}.ratio")
    g2d = ratio_raw.get("general_to_domain", 2.0)
    if g2d is not None and (not isinstance(g2d, (int, float)) or isinstance(g2d, bool) or g2d <= 0):
        raise UserError(f"{where}.ratio.general_to_domain: expected a positive number or null, got {g2d!r}")
    languages = ratio_raw.get("general_languages", {"zh": 1.0, "en": 1.0})
    if languages is not None:
        if not isinstance(languages, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in languages.values()
        ):
            raise UserError(f"{where}.ratio.general_languages: expected {{language: positive weight}}, got {languages!r}")
    ratio = RatioSpec(None if g2d is None else float(g2d),
                      {str(k): float(v) for k, v in (languages or {}).items()})
    tokenizer = _typed(raw, "tokenizer", str, where)
    if Path(tokenizer).expanduser().exists() or tokenizer.startswith((".", "/")):
        tokenizer = str((base / tokenizer).expanduser().resolve())
    output = Path(_typed(raw, "output", str, where)).expanduser()
    on_error = _typed(raw, "on_error", str, where, "raise")
    if on_error not in ON_ERROR:
        raise UserError(f"{where}.on_error: expected one of {ON_ERROR}, got {on_error!r}")
    recipe = DataRecipe(
        output=output if output.is_absolute() else (base / output).resolve(),
        tokenizer=tokenizer,
        sources=sources,
        seq_len=_typed(raw, "seq_len", int, where, 1024),
        seed=_typed(raw, "seed", int, where, 0),
        on_error=on_error,
        num_proc=_typed(raw, "num_proc", int, where, 1),
        batch_size=_typed(raw, "batch_size", int, where, 10_000),
        shards=_typed(raw, "shards", int, where, 1),
        mixer=mixer,
        ratio=ratio,
        select=parse_selection(_resolve_paths(raw.get("select"), base), where, names,
                               [s.name for s in sources if s.kind == "domain"]),
        curriculum=parse_curriculum(_resolve_paths(raw.get("curriculum"), base), where),
        heldout=parse_heldout(raw.get("heldout"), where),
        dedup=parse_dedup(raw.get("dedup"), where),
        decontaminate=parse_contamination(raw.get("decontaminate"), f"{where}.decontaminate"),
    )
    if not 8 <= recipe.seq_len <= MAX_SEQ_LEN:
        raise UserError(f"{where}.seq_len: must be between 8 and {MAX_SEQ_LEN}, got {recipe.seq_len}")
    if recipe.num_proc < 1 or recipe.batch_size < 1:
        raise UserError(f"{where}: num_proc and batch_size must be positive")
    if not 1 <= recipe.shards <= 100_000:
        raise UserError(f"{where}.shards: expected a whole number from 1 to 100000, got {recipe.shards}")
    return recipe


def load_recipe(path: str | Path) -> DataRecipe:
    """Read and validate a recipe file; errors name the file and the field."""
    path = Path(path).expanduser()
    raw = load_yaml_file(path, "recipe")
    recipe = parse_recipe(raw, where=str(path), base=path.resolve().parent)
    return dataclasses.replace(recipe, source_file=path.resolve())
