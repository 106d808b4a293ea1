"""``ecomharness data build``: the pipeline. It owns the stage sequence, every check,
every console line and the timings; an engine (data/engine.py) does the operations.

    [held-out split] -> [dedup] -> [decontaminate] -> [select] -> read + render + tokenize -> mix
    -> ratio draw -> order (seeded shuffle, or [curriculum]) -> pack -> stats, atomically

The ratio draw runs here, on the driver, over four numbers a sample, whichever engine
made the samples. Output goes to a temporary directory beside the target and is moved
into place only when complete (data/output.py). Nothing in the output depends on time,
machine or engine, so the same recipe and seed give byte-identical files.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from ecomharness import registry
from ecomharness.data import layout, ratio
from ecomharness.data.contamination import build_index, build_report, heldout_documents, task_documents
from ecomharness.data.dedup import dedup_stats
from ecomharness.data.engine import Engine
from ecomharness.data.engine_local import LocalEngine
from ecomharness.data.mixers import mixer_options
from ecomharness.data.output import build_stats, write_build_files, write_output
from ecomharness.data.recipe import DataRecipe
from ecomharness.data.records import load_tokenizer, pad_token, renderer, separator_ids, tokenizer_fingerprint
from ecomharness.data.sources import source_pieces
from ecomharness.data.samples import GENERAL
from ecomharness.errors import UserError
from ecomharness.select.scorers import build_scorer


def build_dataset(recipe: DataRecipe, force: bool = False, log=print, engine: Engine | None = None) -> dict:
    """Build the packed dataset of ``recipe`` on ``engine`` (default: this process);
    return the stats written to stats.json, plus what is printed, not written
    (``timings_s``, ``score_cache``, and ``engine`` when it is not the local one)."""
    engine = engine if engine is not None else LocalEngine()
    out = recipe.output
    if out.exists() and not force:
        raise UserError(f"{out} already exists: pass --force to rebuild it (the old one is kept until the new one is complete)")
    mixer = registry.mixers.get(recipe.mixer.name)
    options, separator_text = mixer_options(recipe)
    # Built before any reading, so that a bad proxy model path or tokenizer fails at once.
    curriculum_scorer = None
    if recipe.curriculum is not None:
        curriculum_scorer = build_scorer(recipe.curriculum.by, dict(recipe.curriculum.options), where="curriculum")
    tokenizer = load_tokenizer(recipe.tokenizer)
    separator = separator_ids(tokenizer, separator_text)
    # Opened before any reading too: a task name that does not exist fails at once.
    if recipe.decontaminate is not None and not recipe.decontaminate.tasks:
        raise UserError("decontaminate.tasks: no tasks given: name them in the recipe, or build with "
                        "`--for TRAIN.yaml` to check against that training recipe's evaluation tasks")
    documents = task_documents(list(recipe.decontaminate.tasks), recipe.decontaminate.metadata) \
        if recipe.decontaminate is not None else None
    engine.start(recipe, mixer, tokenizer, log)

    timings: dict[str, float] = {}

    @contextmanager
    def timed(stage: str):
        start = time.perf_counter()
        yield
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start

    with timed("read_tokenize"):
        engine.read()
    with timed("heldout"):
        heldout = engine.split_heldout()
    if heldout is not None:
        log("[data] held out " + ", ".join(f"{n} {c:,}" for n, c in heldout.held.items())
            + " records; writing " + ", ".join(f"{f} {len(d):,}" for f, d in sorted(heldout.documents.items()))
            + f" documents to {layout.HELDOUT}/")
    dedup = None
    if recipe.dedup is not None:
        with timed("dedup"):
            groups, near = engine.deduplicate()
            dedup = dedup_stats(groups, [s.name for s in recipe.sources], near)
        block = dedup[0]
        log(f"[data] dedup: removed {block['removed']:,} duplicate records in {block['groups']:,} groups and "
            f"{block['removed_as_heldout']:,} equal to a held-out text ({block['method']})")
        if "near" in block:
            log(f"[data] dedup: removed {block['near']['removed']:,} near duplicates (Jaccard >= "
                f"{recipe.dedup.near.threshold:g}) in {block['near']['clusters']:,} clusters, "
                f"{block['near']['removed_as_heldout']:,} of them near a held-out text")
    contamination = None
    if recipe.decontaminate is not None:
        spec = recipe.decontaminate
        with timed("decontaminate"):
            index = build_index({**documents, **heldout_documents(heldout.documents if heldout else {})}, spec)
            found, per_source = engine.decontaminate(index, drop=spec.action == "drop")
        contamination = build_report(spec, index, found, per_source)
        hit = {t: r for t, r in contamination["tasks"].items() if r["found"]}
        log(f"[data] decontamination: {sum(per_source.values()):,} records hold test documents of {len(hit)} of "
            f"{len(contamination['tasks'])} task(s) ({'dropped' if spec.action == 'drop' else 'flagged, kept'})"
            + "".join(f"; {t} {r['found']:,}/{r['documents']:,}" for t, r in hit.items()))
    selection = None
    if recipe.select is not None:
        with timed("select"):
            selection = engine.select(log)
    with timed("read_tokenize"):
        counts = engine.tokenize()
    log(f"[data] read, rendered, tokenized {int(counts.records.sum()):,} records ({int(counts.tokens.sum()):,} tokens) "
        f"in {timings['read_tokenize']:.1f}s")
    if counts.records.sum() == 0:
        raise UserError("no usable records in any source" + why_no_records(counts.reports))
    by_kind = {kind: int(sum(counts.records[i] for i, s in enumerate(recipe.sources) if s.kind == kind))
               for kind in ("domain", "general")}
    check_each_kind_has_records(recipe, by_kind, counts.reports)

    with timed("mix"):
        samples = engine.mix(mixer, options, separator)
    log(f"[data] mixed {by_kind['domain']:,} domain records into {len(samples.mix):,} samples with "
        f"{recipe.mixer.name!r} in {timings['mix']:.2f}s")
    with timed("ratio"):
        chosen = ratio.draw_samples(samples.tokens, samples.kind, samples.language, samples.uid,
                                    sorted({s.language for s in recipe.sources}), recipe.ratio, recipe.seed)
    with timed("curriculum" if curriculum_scorer is not None else "order"):
        ordering = engine.order(chosen, curriculum_scorer, separator_text)
    if ordering.curriculum is not None:
        spec, cache = recipe.curriculum, ordering.cache
        log(f"[data] curriculum: {len(chosen.samples):,} samples in {len(ordering.curriculum['stages'])} stage(s) "
            f"by {spec.by} ({spec.order}); scores computed {cache['computed']:,}, reused {cache['reused']:,}")

    def write(tmp) -> dict:
        with timed("pack"):
            packed = engine.pack(tmp / layout.DATASET, pad_token(tokenizer))
        log(f"[data] packed {packed['tokens']:,} tokens into {packed['blocks']:,} blocks of {recipe.seq_len} in "
            f"{packed['shards']} shard(s) in {timings['pack']:.1f}s (content {packed['content_sha256'][:16]})")
        totals = {"records": counts.records, "tokens": counts.tokens, "tokens_used": engine.tokens_used(chosen)}
        stats = build_stats(recipe, counts.reports, totals, samples.mix,
                            {"domain": len(samples.mix), "general": int(np.sum(samples.kind == GENERAL))}, chosen,
                            packed, separator_text, tokenizer_fingerprint(tokenizer),
                            selection=selection.stats if selection is not None else None,
                            curriculum=ordering.curriculum,
                            heldout=heldout.stats(recipe.heldout) if heldout is not None else None, dedup=dedup,
                            contamination=contamination)
        write_build_files(tmp, recipe, stats, heldout.documents if heldout is not None else None, counts.reports)
        return stats

    stats = write_output(out, write, log)
    # Printed, not written: the output stays byte-identical from run to run.
    stats["timings_s"] = timings
    stats["score_cache"] = {name: value for name, value in (("selection", selection.cache if selection else None),
                                                             ("curriculum", ordering.cache)) if value is not None}
    described = engine.describe()
    if described is not None:
        stats["engine"] = described
    return stats


def check_recipe(recipe: DataRecipe) -> list[str]:
    """``data build --check``: everything that can be checked without reading records.
    Each source's format is registered and its files exist, each template compiles,
    the tokenizer loads and the mixer is registered. Returns the lines to print;
    raises ``UserError`` at the first problem."""
    lines = []
    for source in recipe.sources:
        pieces = source_pieces(registry.data_sources.get(source.format), source.path, source.options, None)
        if pieces[0].whole:
            found = f"read by the {source.format!r} reader"
        else:  # a reader of files: they must be there
            found = f"{len(pieces)} file(s)"
        renderer(source)
        lines.append(f"source {source.name!r}: {source.kind}/{source.language}, {source.format}, {found}, "
                     "template compiles")
    registry.mixers.get(recipe.mixer.name)
    tokenizer = load_tokenizer(recipe.tokenizer)
    lines.append(f"tokenizer {recipe.tokenizer}: {len(tokenizer)} tokens (vocabulary {tokenizer_fingerprint(tokenizer)})")
    lines.append(f"mixer {recipe.mixer.name!r}; output {recipe.output}"
                 + (" (exists: the build needs --force)" if recipe.output.exists() else ""))
    return lines


def check_each_kind_has_records(recipe: DataRecipe, records_of_kind: dict[str, int], reports) -> None:
    """A side (domain or general) whose sources all came out empty is an error, not a
    "CPT" set built from the other side alone."""
    for kind, count in records_of_kind.items():
        sources = [s.name for s in recipe.sources if s.kind == kind]
        if sources and count == 0:
            raise UserError(f"no usable {kind} records: every {kind} source came out empty"
                            + why_no_records({name: reports[name] for name in sources}))


def why_no_records(reports: dict) -> str:
    """Why sources gave no record, for an error message: how many records were skipped
    as bad and dropped by filters, the commonest reason of either with its count, and
    the first bad record's message."""
    from collections import Counter

    bad, filtered = Counter(), Counter()
    for report in reports.values():
        bad.update(report.bad)
        filtered.update(report.filtered)
    if not bad and not filtered:
        return ": the sources hold no records"
    reason, count = (bad + filtered).most_common(1)[0]
    lost = [f"{sum(bad.values())} record(s) skipped as bad"] if bad else []
    lost += [f"{sum(filtered.values())} dropped by filters"] if filtered else []
    first = next((r.bad_examples[0] for r in reports.values() if r.bad_examples), None)
    return (f": {' and '.join(lost)}; the commonest reason: {reason} ({count}x)"
            + (f"; the first bad record: {first}" if first else ""))
