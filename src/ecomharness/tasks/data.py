"""Where each bundled task's documents come from, for lm-eval.

Task YAML calls ``custom_dataset: !function ecomharness.tasks.data.load_task`` and
describes its data under ``metadata.ecom``. Documents are resolved in this order, and
the one used is recorded (name and content fingerprint):

1. an explicit location from the user: ``--metadata '{"ecominstruct_dir": DIR}'``
   (or ``finben_dir``, ``general_dir``, or ``hub_path`` for one task), or the
   environment variables ``ECOMHARNESS_ECOMINSTRUCT_DIR``, ``ECOMHARNESS_FINBEN_DIR``,
   ``ECOMHARNESS_GENERAL_DIR``; an explicit location that does not hold the task's
   data is an error, never a silent fallback;
2. the task's public hub dataset, when it has one and the hub is reachable
   (``HF_HUB_OFFLINE=1`` or ``ECOMHARNESS_OFFLINE=1`` skip the network probe);
3. the sample bundled in ``tasks/``, with a warning that its scores are not benchmark
   scores.

Test documents are capped (default 1000, the paper's cap; ``--metadata
'{"max_docs": N}'``) by a seeded draw; few-shot examples come from a separate split
(the bundled ``fewshot`` file, the hub's train split, or a seeded hold-out from the
test file when a real folder has nothing else, removed from the test documents).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ecomharness.errors import UserError
from ecomharness.formats.common import ReadResult, RecordError, check_on_error, collect, fingerprint_files
from ecomharness.formats.finben import finben_doc
from ecomharness.formats.general import CONVERTERS as GENERAL_CONVERTERS
from ecomharness.formats.general import general_doc
from ecomharness.formats.text import read_text_lines, text_doc
from ecomharness.registry import record_formats
from ecomharness.resources import bundled_path

log = logging.getLogger("ecomharness.tasks.data")

DEFAULT_MAX_DOCS = 1000
DEFAULT_SEED = 1234
# Documents held out of a real test file as the few-shot pool, when it has no other split.
HOLDOUT_FEWSHOT = 32

# metadata.ecom.folder of the generic `ecominstruct` tasks: the user names the folder.
USER_FOLDER = "<--metadata dir>"

# What each process has resolved, per task: read by `ecomharness eval` into results.
DATA_SOURCES: dict[str, dict[str, Any]] = {}

ENV_DIRS = {
    "ecominstruct": "ECOMHARNESS_ECOMINSTRUCT_DIR",
    "finben": "ECOMHARNESS_FINBEN_DIR",
    "general": "ECOMHARNESS_GENERAL_DIR",
    "heldout": "ECOMHARNESS_HELDOUT_DIR",
}
FAMILIES = tuple(ENV_DIRS)


@dataclass(frozen=True)
class TaskDataSpec:
    """The ``metadata.ecom`` block of a task YAML, validated."""

    task: str
    family: str  # ecominstruct | finben | general | heldout
    kind: str
    sample: str  # bundled sample, relative to tasks/
    folder: str = ""  # EcomInstruct folder / FinBen or general sub-directory name
    converter: str = ""  # general: hub-format converter (agnews, squad_v2, ...)
    hub: dict[str, Any] = field(default_factory=dict)  # {path, name, test_split, fewshot_split}
    extraction_format: str = "typed_lines"
    answer_layout: str = "compact"  # extraction targets: "compact" or EcomGPT's "ecomgpt"
    fewshot_pool: bool = True  # few-shot task: hold out a pool when there is no separate split
    label_names: tuple[str, ...] = ()  # the hub's label order (ints index into it)
    label_display: dict[str, str] = field(default_factory=dict)  # hub name -> prompt label

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> TaskDataSpec:
        """Validate the block; a task author's mistake names the task and the field."""
        block = metadata.get("ecom")
        if not isinstance(block, dict):
            raise UserError("task metadata needs an 'ecom' mapping describing its data")
        task = block.get("task", "?")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(block) - known
        if unknown:
            raise UserError(f"task {task}: unknown metadata.ecom key(s) {sorted(unknown)}; known: {sorted(known)}")
        for key in ("task", "family", "kind", "sample"):
            if not isinstance(block.get(key), str) or not block[key]:
                raise UserError(f"task {task}: metadata.ecom.{key} must be a non-empty string")
        if block["family"] not in FAMILIES:
            raise UserError(f"task {task}: metadata.ecom.family must be one of {FAMILIES}")
        values = dict(block)
        values["label_names"] = tuple(block.get("label_names", ()))
        if not isinstance(block.get("label_display", {}), dict):
            raise UserError(f"task {task}: metadata.ecom.label_display must be a mapping")
        if not isinstance(block.get("fewshot_pool", True), bool):
            raise UserError(f"task {task}: metadata.ecom.fewshot_pool must be true or false")
        return cls(**values)


# ---------------------------------------------------------------- readers per family


def _read_rows(rows: list[dict], where: str, spec: TaskDataSpec, on_error: str) -> tuple[list[dict], list]:
    """Convert in-memory rows (hub) with the same checks as files; rows without a gold
    label come back as None, to be counted."""
    docs, skipped = [], []
    for number, record in enumerate(rows, start=1):
        try:
            doc = _convert(record, spec, where, number)
        except RecordError as exc:
            if on_error == "raise":
                raise
            skipped.append(exc)
            continue
        docs.append(doc)
    return docs, skipped


def _convert(record: dict, spec: TaskDataSpec, path, line) -> dict | None:
    if spec.family == "general":
        if spec.converter not in GENERAL_CONVERTERS:
            raise UserError(f"task {spec.task}: unknown general converter {spec.converter!r}; "
                            f"expected one of {', '.join(GENERAL_CONVERTERS)}")
        return general_doc(record, spec.converter, spec.label_names, spec.label_display, path, line)
    if spec.family == "finben":
        return finben_doc(record, path, line, headlines=spec.kind == "headlines")
    if spec.family == "heldout":
        return text_doc(record, path, line)
    raise UserError(f"task {spec.task}: the {spec.family} family has no row converter")


def _without_gold_counted(result: ReadResult) -> ReadResult:
    """Drop the documents a converter returned as None (no gold label), counting them."""
    kept = [d for d in result.docs if d is not None]
    result.meta["no_gold"] = len(result.docs) - len(kept)
    result.docs = kept
    return result


def _read_jsonl_dir(directory: Path, spec: TaskDataSpec, on_error: str, names=("test", "valid", "validation")):
    """test + few-shot files of a FinBen / general folder: ``test.jsonl`` (or valid),
    and ``fewshot.jsonl`` or ``train.jsonl`` when present."""
    test_file = next((directory / f"{n}.jsonl" for n in names if (directory / f"{n}.jsonl").is_file()), None)
    if test_file is None:
        raise UserError(f"{directory}: no {', '.join(n + '.jsonl' for n in names)} for task {spec.task}")
    fewshot_file = next((directory / f"{n}.jsonl" for n in ("fewshot", "train") if (directory / f"{n}.jsonl").is_file()), None)

    def read(path: Path) -> ReadResult:
        docs, skipped = collect(path, on_error, lambda record, line: _convert(record, spec, path, line))
        return _without_gold_counted(ReadResult(docs, skipped, str(path.resolve()), fingerprint_files([path])))

    return read(test_file), (read(fewshot_file) if fewshot_file else None)


def _read_local(directory: Path, spec: TaskDataSpec, on_error: str) -> tuple[ReadResult, ReadResult | None]:
    if spec.family == "ecominstruct":
        # Through the record-format registry (``ecomharness_record_formats``), as any
        # plugin's format would be read: the built-in reader has no private path.
        read_ecominstruct = record_formats.get("ecominstruct")
        kind = None if spec.kind == "auto" else spec.kind  # auto: from the folder's name
        options = {"kind": kind, "extraction_format": spec.extraction_format, "on_error": on_error,
                   "answer_layout": spec.answer_layout}
        test = read_ecominstruct(directory, **options)
        fewshot = None
        for split in ("fewshot", "train"):
            if (directory / f"{split}.json").is_file():
                fewshot = read_ecominstruct(directory, split=split, **options)
                break
        return test, fewshot
    if spec.family == "heldout" and not (directory / "test.jsonl").is_file() and (directory / "test.txt").is_file():
        return read_text_lines(directory / "test.txt", on_error), None
    return _read_jsonl_dir(directory, spec, on_error)


# ---------------------------------------------------------------- the hub


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the dataset hub answers a TCP connection (the datasets library itself
    retries for ~25 s before failing, per dataset, on a machine without network)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    if os.environ.get("ECOMHARNESS_OFFLINE") == "1":
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


_HUB_STATE: dict[str, bool] = {}


def _load_hub(spec: TaskDataSpec, hub: dict, on_error: str) -> tuple[ReadResult, ReadResult | None] | None:
    import datasets

    if "reachable" not in _HUB_STATE:
        _HUB_STATE["reachable"] = hub_reachable()
    if not _HUB_STATE["reachable"]:
        return None
    path, name = hub["path"], hub.get("name")
    test_split, fewshot_split = hub.get("test_split", "test"), hub.get("fewshot_split", "train")
    where = f"hub:{path}" + (f"/{name}" if name else "")
    try:
        test_ds = datasets.load_dataset(path, name, split=test_split)
        fewshot_ds = datasets.load_dataset(path, name, split=fewshot_split) if fewshot_split else None
    except Exception as exc:  # network, auth, missing split: fall back, loudly
        log.warning("task %s: could not load %s from the hub (%s); falling back", spec.task, where, exc)
        return None
    names = getattr(test_ds.features.get("label"), "names", None)
    if names:  # the hub's own label order wins over the one in the task YAML
        spec = dataclasses.replace(spec, label_names=tuple(names))

    def result(ds, split) -> ReadResult:
        docs, skipped = _read_rows(list(ds), f"{where}[{split}]", spec, on_error)
        fingerprint = ds._fingerprint[:16] if hasattr(ds, "_fingerprint") else ""
        return _without_gold_counted(ReadResult(docs, skipped, f"{where}[{split}]", fingerprint))

    return result(test_ds, test_split), (result(fewshot_ds, fewshot_split) if fewshot_ds is not None else None)


# ---------------------------------------------------------------- resolution


FOLDERS_KEY = "folders"
# The first name of this key served EcomInstruct only; it is still read.
FOLDERS_ALIASES = ("ecominstruct_folders",)


def folder_mapping(metadata: dict) -> dict[str, str]:
    """The user's task -> folder remapping (``--metadata '{"folders": {...}}'``)."""
    mapping: dict[str, str] = {}
    for key in (*FOLDERS_ALIASES, FOLDERS_KEY):
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise UserError(f"--metadata {key} must map task names to folder names, got {value!r}")
        mapping.update(value)
    return mapping


def folder_candidates(spec: TaskDataSpec, mapping: dict[str, str]) -> list[str]:
    """Names under which a task's folder may appear in a user's directory, best first.

    A remapped name stands alone. Otherwise: the table's name, the task name, and the
    hub dataset's name (``flare_fpb`` -> ``fpb``, ``flare_fpb``, ``flare-fpb``), all
    matched without regard to case, so PIXIU's ``FPB`` is found too.
    """
    if spec.task in mapping:
        return [mapping[spec.task]]
    names = [spec.folder, spec.task, spec.task.replace("_", "-")]
    hub_path = spec.hub.get("path")
    if hub_path:
        names.append(str(hub_path).rsplit("/", 1)[-1])
    return list(dict.fromkeys(n for n in names if n))


def find_folder(root: Path, candidates: list[str]) -> Path | None:
    """The first candidate present under ``root``: exact name first, then any case."""
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    by_folded: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        if child.is_dir():
            by_folded.setdefault(child.name.casefold(), child)
    for name in candidates:
        if name.casefold() in by_folded:
            return by_folded[name.casefold()]
    return None


def _user_root(spec: TaskDataSpec, metadata: dict) -> tuple[Path, str] | None:
    key = f"{spec.family}_dir"
    raw = metadata.get(key) or os.environ.get(ENV_DIRS[spec.family])
    if not raw:
        return None
    origin = f"--metadata {key}" if metadata.get(key) else f"${ENV_DIRS[spec.family]}"
    root = Path(str(raw)).expanduser()
    if not root.is_dir():
        raise UserError(f"{origin}: {root} is not a directory")
    return root, origin


def _locate_folder(spec: TaskDataSpec, metadata: dict) -> tuple[Path | None, str, str | None] | None:
    """``(folder or None, origin, why it is missing or None)`` in the user's directory for
    this task's family; None when the user gave no such directory."""
    located = _user_root(spec, metadata)
    if located is None:
        return None
    root, origin = located
    candidates = folder_candidates(spec, folder_mapping(metadata))
    folder = find_folder(root, candidates)
    if folder is not None:
        return folder, origin, None
    return None, origin, f"{spec.task}: no folder {' / '.join(repr(c) for c in candidates)} in {root} ({origin})"


def missing_folder(spec: TaskDataSpec, metadata: dict) -> str | None:
    """Why the user's directory lacks this task's folder, or None when it has it (or the
    user gave no directory for this task's family)."""
    if spec.folder == USER_FOLDER:
        return None
    located = _locate_folder(spec, metadata)
    return None if located is None else located[2]


def check_locations(configs: list[dict], metadata: dict) -> None:
    """Before any task is built: every task whose family has a user directory must find
    its folder there. All missing folders are named in one error."""
    missing = []
    for cfg in configs:
        block = (cfg.get("metadata") or {}).get("ecom")
        if not isinstance(block, dict):
            continue
        reason = missing_folder(TaskDataSpec.from_metadata({"ecom": block}), metadata)
        if reason:
            missing.append(reason)
    if missing:
        raise UserError(
            f"{len(missing)} task(s) have no folder in the data you gave:\n  " + "\n  ".join(missing)
            + "\n(see the task-to-folder table in tasks/README.md; remap with --metadata "
            "'{\"folders\": {\"TASK\": \"FOLDER\"}}', or run the group of the release you have, "
            "e.g. ecominstruct_public)"
        )


def _explicit_dir(spec: TaskDataSpec, metadata: dict) -> tuple[Path, str] | None:
    if spec.folder == USER_FOLDER:
        raw = metadata.get("dir") or os.environ.get("ECOMHARNESS_ECOMINSTRUCT_TASK_DIR")
        if not raw:
            return None
        directory = Path(str(raw)).expanduser()
        if not (directory / "meta-info.json").is_file():
            raise UserError(f"task {spec.task}: --metadata dir {directory} is not an EcomInstruct task folder (no meta-info.json)")
        return directory, "--metadata dir"
    located = _locate_folder(spec, metadata)
    if located is None:
        return None
    folder, origin, reason = located
    if reason:
        raise UserError(
            f"task {reason} (see the task-to-folder table in tasks/README.md, or remap with "
            "--metadata '{\"folders\": {\"TASK\": \"FOLDER\"}}')"
        )
    return folder, origin


def _resolve(spec: TaskDataSpec, metadata: dict, on_error: str):
    explicit = _explicit_dir(spec, metadata)
    if explicit is not None:
        directory, origin = explicit
        test, fewshot = _read_local(directory, spec, on_error)
        return "explicit", test, fewshot
    hub = dict(spec.hub)
    if metadata.get("hub_path"):
        hub = {**hub, "path": metadata["hub_path"], "name": metadata.get("hub_name")}
    if hub.get("path"):
        loaded = _load_hub(spec, hub, on_error)
        if loaded is not None:
            return "hub", *loaded
    sample_dir = bundled_path("tasks") / spec.sample
    log.warning(
        "task %s: evaluating on the bundled sample %s written by ecomharness: its scores "
        "are NOT benchmark scores (give the real data with --metadata or the environment; "
        "see tasks/README.md)", spec.task, spec.sample,
    )
    test, fewshot = _read_local(sample_dir, spec, on_error)
    # Name bundled files relative to tasks/ so results compare across machines.
    test.source = f"bundled:{spec.sample}"
    if fewshot is not None:
        fewshot.source = f"bundled:{spec.sample} (fewshot)"
    return "bundled", test, fewshot


def _doc_key(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


def documents_hash(docs: list[dict]) -> str:
    """Which documents, in which order: the gate compares it, so two results scored on
    different documents (another cap, seed, split or file) are never compared as equal."""
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(_doc_key(doc).encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def _int_option(metadata: dict, key: str, default: int, minimum: int) -> int:
    value = metadata.get(key, default)
    number = None
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            number = int(value)
        except ValueError:
            pass
    if number is None or number < minimum:
        raise UserError(f"--metadata {key} must be an integer >= {minimum}, got {value!r}")
    return number


def _commonest_reason(skipped: list) -> str:
    from collections import Counter

    reasons = Counter(f"field {e.field!r} {e.reason}" if getattr(e, "field", None) else getattr(e, "reason", str(e))
                      for e in skipped)
    reason, count = reasons.most_common(1)[0]
    return f"{reason} ({count}x)"


def document_counts_line(task: str, source: dict) -> str:
    """The console line saying where every record of a task's file went."""
    parts = [f"{source['records_in_file']} records in {source['source']}"]
    if source["held_out_fewshot"]:
        parts.append(f"{source['held_out_fewshot']} held out as the few-shot pool")
    if source["capped"]:
        parts.append(f"{source['capped']} left out by the cap (max_docs={source['max_docs']}, seed {source['data_seed']})")
    if source["skipped_records"]:
        parts.append(f"{source['skipped_records']} skipped as bad (on_error=skip; commonest: {source['commonest_skip_reason']})")
    if source["no_gold"]:
        parts.append(f"{source['no_gold']} without a gold label")
    return f"ecomharness: task {task}: " + ", ".join(parts) + f" -> {source['documents']} documents scored"


def load_task(**metadata):
    """``custom_dataset`` for every bundled task: resolve, cap, split, record the source.

    Every record of the test file is accounted for, on the console and in the results
    (``ecomharness.data_sources``): scored, held out as the few-shot pool (only for a
    few-shot task whose data has no separate few-shot split), left out by the cap,
    skipped as bad (``on_error: skip``), or without a gold label (hub rows marked so).
    Returns a ``DatasetDict`` with ``test`` and ``fewshot`` splits.
    """
    spec = TaskDataSpec.from_metadata(metadata)
    on_error = metadata.get("on_error", "raise")
    check_on_error(on_error)
    seed = _int_option(metadata, "data_seed", DEFAULT_SEED, 0)
    max_docs = _int_option(metadata, "max_docs", DEFAULT_MAX_DOCS, 1)
    origin, test, fewshot = _resolve(spec, metadata, on_error)
    return task_documents(spec.task, origin, test, fewshot, seed=seed, max_docs=max_docs,
                          fewshot_pool=spec.fewshot_pool)


def skipped_summary(skipped: list) -> str:
    """The records skipped as bad (``RecordError``s), in words for an error message: the
    commonest reason and how often, and where the first skipped record is."""
    first = skipped[0]
    where = f"{first.path}:{first.line}" if getattr(first, "line", None) else str(getattr(first, "path", ""))
    return f"the commonest reason: {_commonest_reason(skipped)} (first at {where})"


def _why_none(test: ReadResult) -> str:
    """Why a source gave no document, in words: the commonest reason its records were
    skipped and how often, with the first one's place (or that it had no gold labels,
    or no records)."""
    if test.skipped:
        return f": all {len(test.skipped)} record(s) were skipped as bad, {skipped_summary(test.skipped)}"
    if test.meta.get("no_gold"):
        return f": its {test.meta['no_gold']} record(s) carry no gold label"
    return ": it holds no records"


def task_documents(task: str, origin: str, test: ReadResult, fewshot: ReadResult | None, *, seed: int = DEFAULT_SEED,
                   max_docs: int = DEFAULT_MAX_DOCS, fewshot_pool: bool = True, provenance: dict | None = None):
    """A task's ``DatasetDict`` (``test`` and ``fewshot`` splits) from what was read, with
    every record accounted for: the few-shot pool held out when there is no separate
    split (``fewshot_pool``), the seeded cap, skipped records and records without gold.
    The data source is recorded (``DATA_SOURCES``, which ``ecomharness eval`` and the
    ledger write into every result, and the gate compares) and a line printed.

    The one ending of every task loader: the bundled tasks' ``load_task``, and plugins'
    own loaders for layouts of their own (``origin``: ``explicit``, ``hub`` or
    ``bundled``; ``provenance``: extra fields for the record, e.g. ``license``)."""
    import datasets

    docs = list(test.docs)
    records_in_file = len(docs) + len(test.skipped) + test.meta.get("no_gold", 0)
    if not docs:
        raise UserError(f"task {task}: {test.source} holds no usable documents" + _why_none(test))
    rng = random.Random(seed)
    held_out = 0
    if fewshot is not None and fewshot.docs:
        fewshot_docs, fewshot_source = fewshot.docs, fewshot.source
    elif fewshot_pool:
        # A few-shot task on data without a separate split: hold out a seeded pool.
        order = sorted(range(len(docs)), key=lambda i: _doc_key(docs[i]))
        held = set(rng.sample(order, min(HOLDOUT_FEWSHOT, len(docs) // 5)))
        fewshot_docs = [docs[i] for i in sorted(held)]
        docs = [d for i, d in enumerate(docs) if i not in held]
        held_out = len(held)
        fewshot_source = f"{held_out} documents held out of {test.source}"
    else:
        # Zero-shot: no pool, so no test document is lost to one.
        fewshot_docs, fewshot_source = [], "none (zero-shot)"
    total = len(docs)
    if len(docs) > max_docs:
        keep = sorted(rng.sample(range(len(docs)), max_docs))
        docs = [docs[i] for i in keep]
    skipped = test.skipped + (fewshot.skipped if fewshot else [])
    source = {
        "origin": origin,
        "source": test.source,
        "fingerprint": test.fingerprint,
        "fewshot_source": fewshot_source,
        "records_in_file": records_in_file,
        "held_out_fewshot": held_out,
        "capped": total - len(docs),
        "documents": len(docs),
        "documents_hash": documents_hash(docs),
        "fewshot_hash": documents_hash(fewshot_docs),
        "documents_available": total,
        "max_docs": max_docs,
        "data_seed": seed,
        "skipped_records": len(skipped),
        "skipped_examples": [str(e) for e in skipped[:5]],
        "commonest_skip_reason": _commonest_reason(skipped) if skipped else None,
        "no_gold": test.meta.get("no_gold", 0),
    }
    for key in ("kind", "kind_source", "extraction_format", "offset_mismatches", "terms_not_in_text"):
        if test.meta.get(key) is not None:
            source[key] = test.meta[key]
    for warning in test.meta.get("warnings", []):
        log.warning("task %s: %s", task, warning)
    source.update(provenance or {})
    DATA_SOURCES[task] = source
    line = document_counts_line(task, source)
    if "kind" in source:
        line += f" (kind {source['kind']}, from the {source['kind_source']})"
    print(line, file=sys.stderr, flush=True)
    log.info("task %s: %s (%s, fingerprint %s)", task, test.source, origin, test.fingerprint)
    test_set = datasets.Dataset.from_list(docs)
    # A zero-shot task's few-shot split is empty but has the test columns.
    fewshot_set = datasets.Dataset.from_list(fewshot_docs) if fewshot_docs else test_set.select([])
    return datasets.DatasetDict({"test": test_set, "fewshot": fewshot_set})
