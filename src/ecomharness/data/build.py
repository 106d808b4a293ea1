"""``ecomharness data build``: run the pipeline stages in order and report what went in.

[select] -> read + render + tokenize (records) -> mix (domain samples) -> ratio
-> order (seeded shuffle, or [curriculum]) -> pack.
Output goes to a temporary directory beside the target and is moved into place only
when complete; stats.json and stats.md describe the build (EcomGPT-CT's Table 1 for the
user's data). Nothing in the output depends on time or machine, so the same recipe and
seed give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ecomharness.data import layout, pack, ratio
from ecomharness.data.heldout import combine_masks, split_heldout
from ecomharness.data.identity import copy_numbers
from ecomharness.data.recipe import DataRecipe
from ecomharness.data.records import build_table
from ecomharness.data.samples import GENERAL, SampleTable, sample_table, sample_texts
from ecomharness.errors import UserError
from ecomharness.util import default_mode, write_json_atomic


def _progress(desc: str, total: int | None = None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=" rec", mininterval=1.0, leave=False)


def _versions() -> dict:
    import datasets
    import tokenizers

    from ecomharness import __version__

    return {"ecomharness": __version__, "datasets": datasets.__version__, "tokenizers": tokenizers.__version__}


def build_dataset(recipe: DataRecipe, force: bool = False, log=print) -> dict:
    """Build the packed dataset of ``recipe``; return the stats written to stats.json.

    Steps: held-out slice and selection (optional) -> read, render, tokenize -> mix ->
    samples -> ratio draw -> order (shuffle or curriculum) -> pack and write, atomically."""
    from ecomharness.registry import data_sources, mixers

    out = recipe.output
    if out.exists() and not force:
        raise UserError(f"{out} already exists: pass --force to rebuild it (the old one is kept until the new one is complete)")
    readers = {s.format: data_sources.get(s.format) for s in recipe.sources}
    mixer = mixers.get(recipe.mixer.name)
    options, separator_text = mixer_options(recipe)
    timings: dict[str, float] = {}
    score_cache: dict[str, dict] = {}
    # Built first so that a bad proxy model path fails before any reading.
    curriculum_scorer = None
    if recipe.curriculum is not None:
        from ecomharness.select.scorers import build_scorer

        curriculum_scorer = build_scorer(recipe.curriculum.by, dict(recipe.curriculum.options), where="curriculum")

    heldout = None
    rendered = rendered_records(recipe, readers)
    if recipe.heldout is not None:
        start = time.perf_counter()
        heldout = split_heldout(recipe, recipe.heldout, rendered)
        timings["heldout"] = time.perf_counter() - start
        log(f"[data] held out " + ", ".join(f"{n} {c:,}" for n, c in heldout.held.items())
            + " records; writing " + ", ".join(f"{f} {len(d):,}" for f, d in sorted(heldout.documents.items()))
            + f" documents to {layout.HELDOUT}/")
        rendered = _kept(rendered, heldout.keep)
    selection = None
    if recipe.select is not None:
        from ecomharness.select.stage import run_selection

        start = time.perf_counter()
        selection = run_selection(recipe, recipe.select, rendered, log=log)
        timings["select"] = time.perf_counter() - start
        score_cache["selection"] = selection.cache
    keep = combine_masks(heldout.keep if heldout else None, selection.kept if selection else None)
    start = time.perf_counter()
    with _progress("read+tokenize") as bar:
        table, reports = build_table(recipe, readers, progress=bar, keep=keep)
    timings["read_tokenize"] = time.perf_counter() - start
    log(f"[data] read, rendered, tokenized {len(table):,} records ({int(table.n_tokens.sum()):,} tokens) "
        f"in {timings['read_tokenize']:.1f}s")
    if len(table) == 0:
        raise UserError("no usable records in any source (see the bad-record counts with on_error: skip)")

    from ecomharness.data.records import load_tokenizer, tokenizer_fingerprint

    tokenizer = load_tokenizer(recipe.tokenizer)
    separator = separator_ids(tokenizer, separator_text)

    start = time.perf_counter()
    domain_rows = table.rows_of_kind("domain")
    general_rows = table.rows_of_kind("general")
    _check_each_kind_has_records(recipe, {"domain": len(domain_rows), "general": len(general_rows)}, reports)
    mix = mixer(table.take(domain_rows), options, recipe.seed)
    timings["mix"] = time.perf_counter() - start
    log(f"[data] mixed {len(domain_rows):,} domain records into {len(mix):,} samples with "
        f"{recipe.mixer.name!r} in {timings['mix']:.2f}s")

    samples = sample_table(table, domain_rows, general_rows, mix, len(separator))
    start = time.perf_counter()
    chosen = ratio.draw_samples(samples.tokens, samples.kind, samples.language, samples.uid, table.languages,
                                recipe.ratio, recipe.seed)
    timings["ratio"] = time.perf_counter() - start
    curriculum_stats = None
    if curriculum_scorer is None:
        # Domain and general samples interleave, by seeded hashes of their content.
        shard_order = [chosen.samples[positions]
                       for positions in pack.shard_orders(samples.uid[chosen.samples], recipe.seed + 1, recipe.shards)]
    else:
        from ecomharness.select.curriculum import order_samples

        start = time.perf_counter()
        spec = recipe.curriculum
        cache_dir = Path(spec.cache_dir or recipe.output.parent / ".selection-cache")
        texts = sample_texts(table, samples, tokenizer, separator_text)
        # Scored and staged from a canonical order (by uid and copy number), so ties and
        # the shuffle inside stages do not depend on where the draw listed a sample.
        uids = samples.uid[chosen.samples]
        canonical = chosen.samples[np.lexsort((copy_numbers(uids), uids))]
        packed_order, curriculum_stats, score_cache["curriculum"] = order_samples(
            spec, curriculum_scorer, canonical, texts, cache_dir, recipe.seed + 1)
        # The curriculum is one order: shards take consecutive stretches of it.
        shard_order = np.array_split(packed_order, recipe.shards)
        timings["curriculum"] = time.perf_counter() - start
        log(f"[data] curriculum: {len(packed_order):,} samples in {len(curriculum_stats['stages'])} stage(s) by "
            f"{spec.by} ({spec.order}); scores computed {score_cache['curriculum']['computed']:,}, "
            f"reused {score_cache['curriculum']['reused']:,}")

    def write(tmp: Path) -> dict:
        start = time.perf_counter()
        streams = [pack.sample_token_stream(table, samples.order, samples.bounds, order, separator,
                                            tokenizer.eos_token_id) for order in shard_order]
        packed = pack.write_blocks(streams, recipe.seq_len, pad_token(tokenizer), tmp / layout.DATASET)
        timings["pack"] = time.perf_counter() - start
        log_packed(log, packed, recipe.seq_len, timings["pack"])
        stats = build_stats(recipe, reports, source_totals(table, samples, chosen), mix,
                            {"domain": len(mix), "general": int(np.sum(samples.kind == GENERAL))}, chosen, packed,
                            separator_text, tokenizer_fingerprint(tokenizer),
                            selection=selection.stats if selection is not None else None,
                            curriculum=curriculum_stats,
                            heldout=heldout.stats(recipe.heldout) if heldout is not None else None)
        write_build_files(tmp, recipe, stats, heldout.documents if heldout is not None else None)
        return stats

    stats = _write_output(out, write, log)
    # Printed, not written: the output stays byte-identical from run to run.
    stats["timings_s"] = timings
    stats["score_cache"] = score_cache
    return stats


def write_build_files(tmp: Path, recipe: DataRecipe, stats: dict, heldout_documents: dict | None) -> None:
    """Everything of a build output beside the packed dataset: the held-out texts,
    stats.json, stats.md and a copy of the recipe."""
    for folder, documents in (heldout_documents or {}).items():
        target = tmp / layout.HELDOUT / folder / "test.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents), encoding="utf-8")
    write_json_atomic(tmp / layout.STATS, stats)
    (tmp / layout.STATS_MD).write_text(stats_markdown(stats), encoding="utf-8")
    if recipe.source_file is not None:
        shutil.copyfile(recipe.source_file, tmp / layout.RECIPE)


def empty_mix_counts(recipe: DataRecipe) -> dict:
    """The recipe's mixer run over no records: the counts it reports for nothing (so a
    build without domain records shows the same keys whichever engine ran it)."""
    from ecomharness.data.records import RecordTable
    from ecomharness.registry import mixers

    empty = np.zeros(0, np.int64)
    table = RecordTable(source=empty.astype(np.int16), language=empty.astype(np.int16), key=empty,
                        n_tokens=empty.astype(np.int32), starts=empty, ids=empty.astype(np.int32),
                        source_names=[s.name for s in recipe.sources], source_kinds=[s.kind for s in recipe.sources],
                        languages=sorted({s.language for s in recipe.sources}), uid=empty.astype(np.uint64))
    options, _ = mixer_options(recipe)
    return mix_counts(mixers.get(recipe.mixer.name)(table, options, recipe.seed))


def mixer_options(recipe: DataRecipe) -> tuple[dict, str]:
    """The mixer's own options, and the separator text that joins a sample's records
    (``mixer.separator``, default a newline), which is the build's, not the mixer's."""
    options = dict(recipe.mixer.options)
    return options, options.pop("separator", "\n")


def separator_ids(tokenizer, separator_text: str) -> np.ndarray:
    """The separator's token ids (int32), as packed between a sample's records."""
    return np.asarray(tokenizer(separator_text, add_special_tokens=False)["input_ids"], np.int32)


def mix_counts(mix) -> dict:
    """A mix's counts and histograms as plain data: what stats.json shows, and what each
    Ray partition reports for the driver to sum."""
    return {"counts": dict(mix.counts), "cluster_sizes": dict(mix.cluster_sizes), "coverage": dict(mix.coverage),
            "samples": len(mix)}


def _write_output(out: Path, write, log) -> dict:
    """Run ``write(tmp)`` into a fresh folder beside ``out`` and move it into place:
    readers see the old build or the new one, never half of either; a failed write
    leaves the old one untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out, log)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, default_mode(directory=True))
    try:
        result = write(tmp)
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{time.time_ns()}")
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _kept(rendered, keep: dict[str, np.ndarray]):
    """``rendered`` without the records ``keep`` masks out (the held-out slice)."""

    def kept(source):
        mask = keep.get(source.name)
        for ordinal, pair in enumerate(rendered(source)):
            if mask is None or (ordinal < len(mask) and mask[ordinal]):
                yield pair

    return kept


def rendered_records(recipe: DataRecipe, readers: dict):
    """``source -> (text, record) per good record``, rendered exactly as the build renders
    them (bad records raise or are skipped by ``on_error``; the build counts them)."""
    from ecomharness.data.records import SourceReport, _rendered

    def rendered(source):
        for _, text, record in _rendered(source, readers[source.format], recipe.on_error, SourceReport()):
            yield text, record

    return rendered


def check_recipe(recipe: DataRecipe) -> list[str]:
    """``data build --check``: everything that can be checked without reading records.
    Each source's format is registered and its files exist, each template compiles,
    the tokenizer loads and the mixer is registered. Returns the lines to print;
    raises ``UserError`` at the first problem."""
    from ecomharness.data.records import _renderer, load_tokenizer, tokenizer_fingerprint
    from ecomharness.data.sources import SUFFIXES, expand_paths
    from ecomharness.registry import data_sources, mixers

    lines = []
    for source in recipe.sources:
        data_sources.get(source.format)
        if source.format in SUFFIXES:  # a file format: its files must be there
            found = f"{len(expand_paths(source.path, source.format))} file(s)"
        else:
            found = f"read by the {source.format!r} plugin"
        _renderer(source)
        lines.append(f"source {source.name!r}: {source.kind}/{source.language}, {source.format}, {found}, "
                     "template compiles")
    mixers.get(recipe.mixer.name)
    tokenizer = load_tokenizer(recipe.tokenizer)
    lines.append(f"tokenizer {recipe.tokenizer}: {len(tokenizer)} tokens (vocabulary {tokenizer_fingerprint(tokenizer)})")
    lines.append(f"mixer {recipe.mixer.name!r}; output {recipe.output}"
                 + (" (exists: the build needs --force)" if recipe.output.exists() else ""))
    return lines


def _check_each_kind_has_records(recipe: DataRecipe, records_of_kind: dict[str, int], reports) -> None:
    """A side (domain or general) whose sources all came out empty is an error, not a
    "CPT" set built from the other side alone."""
    for kind, count in records_of_kind.items():
        sources = [s.name for s in recipe.sources if s.kind == kind]
        if sources and count == 0:
            lost = "; ".join(f"{name}: {sum(reports[name].bad.values())} bad ({dict(reports[name].bad)})"
                             for name in sources)
            raise UserError(f"no usable {kind} records: every {kind} source came out empty ({lost})")


def remove_stale_builds(out: Path, log) -> None:
    """Remove the working folders of builds of ``out`` that were killed (their process
    is gone), saying so: a kill leaves ``.NAME.building-PID-*`` or ``.NAME.old-*``."""
    for path in sorted(out.parent.glob(f".{out.name}.building-*")) + sorted(out.parent.glob(f".{out.name}.old-*")):
        pid = path.name.split(".building-", 1)[1].split("-", 1)[0] if ".building-" in path.name else ""
        if pid.isdigit() and _alive(int(pid)):
            continue  # a build running now
        shutil.rmtree(path, ignore_errors=True)
        log(f"[data] removed {path.name}, left by a build that was killed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pad_token(tokenizer) -> int:
    """The id that fills the last block of a shard (EOS when the tokenizer has no PAD)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def log_packed(log, packed: dict, seq_len: int, seconds: float) -> None:
    """The packing line both engines print."""
    log(f"[data] packed {packed['tokens']:,} tokens into {packed['blocks']:,} blocks of {seq_len} in "
        f"{packed['shards']} shard(s) in {seconds:.1f}s (content {packed['content_sha256'][:16]})")


def source_totals(table, samples: SampleTable, chosen) -> dict[str, np.ndarray]:
    """Per source (recipe order): good records, their tokens, and the tokens the drawn
    samples use (with repeats)."""
    n = len(table.source_names)
    uses = np.bincount(chosen.samples, minlength=len(samples))
    row_uses = np.repeat(uses, samples.sizes)
    order = samples.order
    return {
        "records": np.bincount(table.source, minlength=n),
        "tokens": np.bincount(table.source, weights=table.n_tokens, minlength=n),
        "tokens_used": np.bincount(table.source[order], weights=table.n_tokens[order] * row_uses, minlength=n),
    }


def build_stats(recipe, reports, totals: dict[str, np.ndarray], mix, sample_counts: dict[str, int], chosen, packed,
                separator_text, tokenizer_fingerprint: str, selection: dict | None = None,
                curriculum: dict | None = None, heldout: dict | None = None) -> dict:
    """stats.json of a build, from what either engine measured: bad-record ``reports``
    per source, per-source ``totals`` (``source_totals``), the mixer's counts and
    histograms (``mix``), domain and general sample counts, the ratio draw, packing, the
    vocabulary's fingerprint, and the optional stages' own stats."""
    sources = []
    for i, spec in enumerate(recipe.sources):
        report = reports[spec.name]
        sources.append({
            "name": spec.name, "kind": spec.kind, "language": spec.language, "format": spec.format,
            "path": spec.path, "records": int(totals["records"][i]), "bad_records": int(sum(report.bad.values())),
            "bad_by_reason": dict(sorted(report.bad.items())), "bad_examples": report.bad_examples,
            "tokens": int(totals["tokens"][i]), "tokens_used": int(totals["tokens_used"][i]),
        })
    kinds: Counter = Counter()
    for s in sources:
        kinds[s["kind"]] += s["tokens_used"]
    achieved = chosen.tokens_by_group
    general_total = sum(v for k, v in achieved.items() if k.startswith("general/"))
    ratios = {
        "general_to_domain_target": recipe.ratio.general_to_domain,
        "general_to_domain_achieved": (general_total / achieved["domain"]) if achieved["domain"] else None,
        "general_languages_target": recipe.ratio.general_languages,
        "general_language_shares_achieved": {
            k.split("/", 1)[1]: (v / general_total if general_total else 0.0)
            for k, v in achieved.items() if k.startswith("general/")
        },
        "tokens_target": {k: round(v, 1) for k, v in chosen.targets.items()},
        "tokens_achieved": achieved,
    }
    return {
        "recipe_fingerprint": recipe.fingerprint(),
        "seed": recipe.seed,
        "tokenizer": recipe.tokenizer,
        "seq_len": recipe.seq_len,
        "mixer": {"name": recipe.mixer.name, **recipe.mixer.options, "separator": separator_text},
        "versions": _versions(),
        "sources": sources,
        "records": int(sum(s["records"] for s in sources)),
        "bad_records": int(sum(s["bad_records"] for s in sources)),
        "samples": {
            "domain": int(sample_counts["domain"]), "general": int(sample_counts["general"]),
            "selected": int(len(chosen.samples)), "mixer_counts": dict(sorted(mix.counts.items())),
            "records_per_domain_sample": {str(k): v for k, v in sorted(mix.cluster_sizes.items())},
            "sources_per_domain_sample": {str(k): v for k, v in sorted(mix.coverage.items())},
        },
        "tokens_used_by_kind": dict(sorted(kinds.items())),
        "ratios": ratios,
        "packing": {**packed, "seq_len": recipe.seq_len},
        "tokenizer_fingerprint": tokenizer_fingerprint,
        **{name: value for name, value in (("selection", selection), ("curriculum", curriculum),
                                           ("heldout", heldout)) if value is not None},
    }


def stats_markdown(stats: dict) -> str:
    """The build report as markdown: sources table, ratios, sample histograms, packing."""
    lines = ["# Data build report", "", f"Recipe fingerprint `{stats['recipe_fingerprint']}`, seed {stats['seed']}, "
             f"mixer `{stats['mixer']['name']}`, tokenizer `{stats['tokenizer']}`.", "",
             "| source | kind | lang | records | bad | tokens | tokens used |", "|---|---|---|--:|--:|--:|--:|"]
    for s in stats["sources"]:
        lines.append(f"| {s['name']} | {s['kind']} | {s['language']} | {s['records']:,} | {s['bad_records']:,} | "
                     f"{s['tokens']:,} | {s['tokens_used']:,} |")
    r = stats["ratios"]
    g2d = r["general_to_domain_achieved"]
    lines += ["", "## Ratios (tokens)", "",
              f"- general:domain target {r['general_to_domain_target']}, achieved "
              f"{'n/a' if g2d is None else f'{g2d:.3f}'}",
              f"- general languages target {r['general_languages_target']}, achieved shares "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["general_language_shares_achieved"].items())]
    samples = stats["samples"]
    lines += ["", "## Samples", "", f"- domain samples {samples['domain']:,}, general samples {samples['general']:,}, "
              f"selected (with repeats) {samples['selected']:,}",
              "- mixer: " + ", ".join(f"{k} {v:,}" for k, v in samples["mixer_counts"].items()), "",
              "| records per domain sample | samples |", "|--:|--:|"]
    lines += [f"| {k} | {v:,} |" for k, v in samples["records_per_domain_sample"].items()]
    lines += ["", "| sources per domain sample | samples |", "|--:|--:|"]
    lines += [f"| {k} | {v:,} |" for k, v in samples["sources_per_domain_sample"].items()]
    p = stats["packing"]
    lines += ["", "## Packing", "", f"{p['tokens']:,} tokens in {p['blocks']:,} blocks of {p['seq_len']} in "
              f"{p['shards']} shard(s) ({p['padding']:,} padding tokens in the last block of each shard); "
              f"content sha256 `{p['content_sha256']}`", ""]
    bad = [s for s in stats["sources"] if s["bad_records"]]
    if bad:
        lines += ["## Bad records", ""]
        for s in bad:
            lines.append(f"- {s['name']}: " + ", ".join(f"{k} {v}" for k, v in s["bad_by_reason"].items()))
            lines += [f"  - {e}" for e in s["bad_examples"]]
    return "\n".join(lines) + "\n"
