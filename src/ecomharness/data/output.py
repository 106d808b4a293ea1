"""What a data build writes beside its packed dataset, and how it is put in place.

stats.json and stats.md describe the build (EcomGPT-CT's Table 1 for the user's data),
the held-out texts and a copy of the recipe sit beside them, and the whole folder is
written into a temporary directory next to the target and moved into place only when
complete. Both engines end here: nothing in these files depends on which one ran, on
time or on the machine.
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

from ecomharness import __version__
from ecomharness.data import layout
from ecomharness.data.recipe import DataRecipe
from ecomharness.util import default_mode, write_json_atomic


def versions() -> dict:
    """The versions of what shapes a build's bytes: ours, datasets' (the Arrow shards) and tokenizers'."""
    import datasets
    import tokenizers

    return {"ecomharness": __version__, "datasets": datasets.__version__, "tokenizers": tokenizers.__version__}


def write_output(out: Path, write, log) -> dict:
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


def write_build_files(tmp: Path, recipe: DataRecipe, stats: dict, heldout_documents: dict | None,
                      reports: dict | None = None) -> None:
    """Everything of a build output beside the packed dataset: the held-out texts, the
    first records each filter dropped per source (``filtered/SOURCE.jsonl``),
    stats.json, stats.md and a copy of the recipe."""
    for source in recipe.sources:
        examples = reports[source.name].filtered_examples if reports and source.filters else []
        if examples:
            target = tmp / layout.FILTERED / f"{source.name}.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
    for folder, documents in (heldout_documents or {}).items():
        target = tmp / layout.HELDOUT / folder / "test.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents), encoding="utf-8")
    write_json_atomic(tmp / layout.STATS, stats)
    (tmp / layout.STATS_MD).write_text(stats_markdown(stats), encoding="utf-8")
    if recipe.source_file is not None:
        shutil.copyfile(recipe.source_file, tmp / layout.RECIPE)


def build_stats(recipe, reports, totals: dict[str, np.ndarray], mix, sample_counts: dict[str, int], chosen, packed,
                separator_text, tokenizer_fingerprint: str, selection: dict | None = None,
                curriculum: dict | None = None, heldout: dict | None = None,
                dedup: tuple[dict, dict] | None = None, contamination: dict | None = None) -> dict:
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
        if dedup is not None:
            sources[-1].update(dedup[1][spec.name])
        if contamination is not None:
            sources[-1]["contaminated"] = contamination["records"][spec.name]
        if spec.filters:  # only sources that filter say so: other builds keep their bytes
            sources[-1]["filtered"] = int(sum(report.filtered.values()))
            sources[-1]["filtered_by_reason"] = dict(sorted(report.filtered.items()))
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
        "versions": versions(),
        "sources": sources,
        "records": int(sum(s["records"] for s in sources)),
        "bad_records": int(sum(s["bad_records"] for s in sources)),
        **({"filtered_records": int(sum(s.get("filtered", 0) for s in sources))}
           if any("filtered" in s for s in sources) else {}),
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
                                           ("heldout", heldout), ("dedup", dedup[0] if dedup else None),
                                           ("contamination", contamination))
           if value is not None},
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
    if "dedup" in stats:
        d = stats["dedup"]
        lines += ["## Duplicates", "", f"{d['method']}: {d['removed']:,} records removed in {d['groups']:,} groups, "
                  f"{d['removed_as_heldout']:,} equal to a held-out text.", ""]
        lines += [f"- {s['name']}: {s['duplicates']:,} duplicates, {s['duplicates_of_heldout']:,} of held-out texts"
                  + (f", {s['near_duplicates']:,} near duplicates" if "near_duplicates" in s else "")
                  for s in stats["sources"]]
        if "near" in d:
            lines += ["", f"Near duplicates: {d['near']['removed']:,} removed in {d['near']['clusters']:,} clusters, "
                      f"{d['near']['removed_as_heldout']:,} near a held-out text."]
        if d["largest"]:
            lines += ["", "| records | text |", "|--:|---|"]
            lines += [f"| {g['records']:,} | {g['text'][:80].replace('|', '/').replace(chr(10), ' ')} |"
                      for g in d["largest"]]
        lines.append("")
    if "contamination" in stats:
        c = stats["contamination"]
        verb = "dropped" if c["action"] == "drop" else "flagged (kept in training)"
        lines += ["## Contamination", "", f"Records holding a test document were {verb}: "
                  + ", ".join(f"{name} {n:,}" for name, n in c["records"].items()) + ".", "",
                  "| task | documents | checked | found | share |", "|---|--:|--:|--:|--:|"]
        lines += [f"| {t} | {r['documents']:,} | {r['checked']:,} | {r['found']:,} | {r['share']:.4f} |"
                  for t, r in c["tasks"].items()]
        lines.append("")
    filtered = [s for s in stats["sources"] if s.get("filtered")]
    if filtered:
        lines += ["## Filtered records", "", f"Examples of each reason in `{layout.FILTERED}/`.", ""]
        for s in filtered:
            lines.append(f"- {s['name']}: {s['filtered']:,} of {s['filtered'] + s['records']:,} dropped ("
                         + ", ".join(f"{k} {v:,}" for k, v in s["filtered_by_reason"].items()) + ")")
        lines.append("")
    bad = [s for s in stats["sources"] if s["bad_records"]]
    if bad:
        lines += ["## Bad records", ""]
        for s in bad:
            lines.append(f"- {s['name']}: " + ", ".join(f"{k} {v}" for k, v in s["bad_by_reason"].items()))
            lines += [f"  - {e}" for e in s["bad_examples"]]
    return "\n".join(lines) + "\n"
