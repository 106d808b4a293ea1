"""The end-to-end demo: EcomGPT-CT's method on a 2-core CPU, nothing downloaded.

Stages (each prints its time): a synthetic shop corpus and general text; a tokenizer
trained on them; a small Bloom pre-trained briefly on general text (the base model);
data builds with graph mixing at general:domain 2:1, each setting aside a held-out
slice; CPT of the base with DeepSpeed ZeRO-2 + CPU offload, every checkpoint evaluated
inline on the cheap profile (held-out bits per byte on domain and general text, and
the ranked-choice classification tasks) and the final one on the generative suite
(ecom_icl and general_icl, the async profile, by ``watch``), each gated against the
base with the default policy; the report.
The corpus, tokenizer, data, base model and its evaluation are cached under
``OUT/cache`` (each with a completion marker), so a second run starts at CPT.
``--compare`` adds the paper's baselines: Separate mixing, domain-only and
general-only CPT, in a table in the spirit of EcomGPT-CT's Table 4.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ecomharness.resources import bundled_path

# The in-loop profile: signals that move for a small model, at a small share of training
# (general_icl_rc is left out: its long English prompts cost more than all of these).
INLINE_TASKS = ("heldout_bpb", "ecom_icl_rc")
# The generative suite: evaluated out of the loop, on the final checkpoint.
ASYNC_TASKS = ("ecom_icl", "general_icl")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and budgets of the demo (measured on the 2-core dev machine: see README)."""

    n_products: int = 6000
    n_general: int = 20000
    vocab_size: int = 6000
    seq_len: int = 256
    batch_size: int = 8
    hidden_size: int = 192
    n_layer: int = 4
    n_head: int = 4
    learning_rate: float = 3e-3
    base_steps: int = 200
    cpt_steps: int = 240
    checkpoints: int = 3
    eval_limit: int = 40  # documents per task: all 40 of each bundled sample
    inline_subset: int = 24  # documents per task in the loop, drawn with the seed
    heldout_share: float = 0.01  # of products and general documents, kept out of training
    heldout_documents: int = 40  # per held-out folder (domain, general_zh, general_en)
    max_gen_toks: int = 24
    seed: int = 0


def _stage(name: str, log=print):
    start = time.perf_counter()
    log(f"[demo] {name} ...")

    def done(detail: str = "") -> float:
        seconds = time.perf_counter() - start
        log(f"[demo] {name}: {seconds:.1f}s {detail}".rstrip())
        return seconds

    return done


def task_sample_texts() -> list[str]:
    """Every text line of the bundled task samples (for tokenizers' coverage)."""
    texts = []
    for path in sorted(bundled_path("tasks").rglob("*.json*")):
        texts.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return texts


def _cached(marker: Path) -> bool:
    return marker.is_file()


def _mark(marker: Path, payload: dict | None = None) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(payload or {}, indent=2) + "\n")


def prepare_corpus(cache: Path, cfg: DemoConfig, log=print) -> dict[str, Path]:
    """The shop corpus (cached)."""
    from ecomharness.demo.shop import write_shop

    marker = cache / "corpus" / "DONE"
    names = [f"{s}_{l}" for s in ("products", "attributes", "descriptions", "reviews", "general") for l in ("zh", "en")]
    paths = {name: cache / "corpus" / f"{name}.jsonl" for name in names}
    if _cached(marker):
        log("[demo] corpus: cached")
        return paths
    done = _stage("generate the synthetic shop corpus and general text", log)
    paths = write_shop(cache / "corpus", cfg.n_products, cfg.n_general, seed=cfg.seed)
    _mark(marker)
    done(f"({cfg.n_products:,} products in 4 sources, {cfg.n_general:,} general documents)")
    return paths


def prepare_tokenizer(cache: Path, paths: dict[str, Path], cfg: DemoConfig, log=print) -> Path:
    """A byte-level BPE tokenizer with every CJK character its own token (cached)."""
    from ecomharness.demo.tiny import train_tokenizer

    out = cache / "tokenizer"
    if _cached(out / "DONE"):
        log("[demo] tokenizer: cached")
        return out
    done = _stage("train the tokenizer", log)
    texts = task_sample_texts()
    for path in paths.values():
        with path.open(encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for _, line in zip(range(5000), fh))
    train_tokenizer(texts, vocab_size=cfg.vocab_size, out_dir=out)
    _mark(out / "DONE")
    done(f"(vocabulary {cfg.vocab_size:,})")
    return out


def build_data(cache: Path, name: str, sources: list[dict], tokenizer: Path, cfg: DemoConfig,
               mixer: dict | None = None, ratio: dict | None = None, log=print) -> Path:
    """One `data build` (cached by output directory)."""
    from ecomharness.data import layout
    from ecomharness.data.build import build_dataset
    from ecomharness.data.recipe import parse_recipe

    out = cache / "data" / name
    stats_file = layout.stats_file(out)
    if stats_file is not None and "heldout" in json.loads(stats_file.read_text(encoding="utf-8")):
        log(f"[demo] data {name}: cached")
        return out
    if name == "general":  # a base model trained on a build without a held-out slice saw that text
        shutil.rmtree(cache / "base", ignore_errors=True)
    done = _stage(f"data build: {name}", log)
    raw = {"output": str(out), "tokenizer": str(tokenizer), "seq_len": cfg.seq_len, "seed": cfg.seed,
           "sources": sources, "mixer": mixer or {"name": "graph", "min_records": 2, "max_records": 8},
           # The same seed and share in every build hold out the same products and texts.
           "heldout": {"share": cfg.heldout_share, "max_documents": cfg.heldout_documents}}
    if ratio is not None:
        raw["ratio"] = ratio
    stats = build_dataset(parse_recipe(raw), force=True, log=lambda *_: None)
    r = stats["ratios"]
    g2d = r["general_to_domain_achieved"]
    done(f"({stats['packing']['tokens']:,} tokens; general:domain "
         f"{'n/a' if g2d is None else f'{g2d:.2f}'}; {stats['samples']['domain']:,} domain samples)")
    return out


def _train_recipe(run_dir: Path, model: dict, tokenizer: Path, data: Path, steps: int, save_steps: int,
                  cfg: DemoConfig, eval_mode: str, on_start: bool, gate: str | None = None):
    from ecomharness.train.recipe import parse_recipe

    raw = {
        "mode": "cpt", "run_dir": str(run_dir), "model": model, "tokenizer": str(tokenizer),
        "data": {"path": str(data)},
        "training": {"max_steps": steps, "per_device_train_batch_size": cfg.batch_size,
                     "learning_rate": cfg.learning_rate, "lr_scheduler_type": "cosine",
                     "warmup_steps": max(steps // 20, 1), "weight_decay": 0.0, "save_steps": save_steps,
                     "logging_steps": 10, "seed": cfg.seed, "save_total_limit": cfg.checkpoints + 1},
        "deepspeed": "zero2_offload",
        "eval": {"mode": "off"} if eval_mode == "off" else {"on_start": on_start, "gate": gate,
                 # Zero-shot: the few-shot prompts cost 5x more, for a signal no better here.
                 "inline": {"tasks": list(INLINE_TASKS), "subset": cfg.inline_subset, "num_fewshot": 0,
                            "batch_size": 16,
                            # Every run reads the held-out text of the 2:1 build: the same
                            # documents for all (a domain-only build has no general slice).
                            "metadata": {"heldout_dir": str(Path(data).parent / "graph_2to1" / "heldout")}},
                 # Past max_steps: only the final checkpoint (always chosen) is evaluated.
                 "async": {"tasks": list(ASYNC_TASKS), "limit": cfg.eval_limit, "max_gen_toks": cfg.max_gen_toks,
                           "batch_size": 16, "every_n_saves": steps + 1}},
    }
    return parse_recipe(raw)


def pretrain_base(cache: Path, tokenizer: Path, data: Path, cfg: DemoConfig, log=print) -> Path:
    """A small Bloom trained briefly on general text: the starting point of CPT (cached)."""
    from ecomharness.train.run import run_training

    run_dir = cache / "base"
    final = run_dir / f"checkpoint-{cfg.base_steps}"
    if _cached(run_dir / "train_done.json"):
        log("[demo] base model: cached")
        return final
    shutil.rmtree(run_dir, ignore_errors=True)
    done = _stage(f"pre-train the base model on general text ({cfg.base_steps} steps)", log)
    model = {"init": {"architecture": "bloom", "hidden_size": cfg.hidden_size, "n_layer": cfg.n_layer,
                      "n_head": cfg.n_head}}
    recipe = _train_recipe(run_dir, model, tokenizer, data, cfg.base_steps, cfg.base_steps, cfg, "off", False)
    summary = run_training(recipe, log=lambda *_: None)
    done(f"(final loss {summary['losses'][-1]:.3f})")
    return final


def evaluate_base(cache: Path, base: Path, spec, log=print) -> list[dict]:
    """The base model's ledger records (``init``), one per eval profile of ``spec``,
    evaluated once and cached."""
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator
    from ecomharness.evaluation.ledger import ledger_record

    path = cache / "base_eval.json"
    keys = [profile.settings().key() for profile in spec.profiles().values()]
    if path.is_file():
        records = json.loads(path.read_text(encoding="utf-8"))
        # Records from another task set, of task versions other than the installed ones
        # (the gate would refuse to compare them: version_mismatch), or whose
        # per-document files are gone, are evaluated again.
        if isinstance(records, list) and [r.get("task_set") for r in records] == keys and all(
                (cache / (r.get("per_document") or {}).get("file", "-")).is_file() for r in records) \
                and versions_match(records, installed_versions(spec)):
            log("[demo] base model evaluation: cached")
            return records
    done = _stage("evaluate the base model on both profiles", log)
    records = []
    for profile in spec.profiles().values():
        start = time.perf_counter()
        evaluator = CheckpointEvaluator(profile.settings())
        results = evaluator.evaluate_path(str(base))
        record = ledger_record("init", 0, evaluator.settings, results=results, seconds=time.perf_counter() - start,
                               data_sources=evaluator.data_sources, record_folder=cache)
        chance = _chance(evaluator, record)
        if chance:
            record["chance"] = chance  # a field of the demo's cache, not of the ledger's schema
        records.append(record)
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    done()
    return records


def installed_versions(spec) -> dict[str, object]:
    """The version each leaf task of the recipe's profiles has as installed now."""
    from ecomharness.tasks.index import leaf_task_configs
    from ecomharness.tasks.open import open_tasks

    versions = {}
    for profile in spec.profiles().values():
        opened = open_tasks(list(profile.tasks), include_path=list(profile.include_path) or None,
                            metadata=profile.metadata)
        for cfg in leaf_task_configs(opened.manager, opened.names):
            versions[cfg.get("task")] = (cfg.get("metadata") or {}).get("version")
    return versions


def versions_match(records: list[dict], installed: dict[str, object]) -> bool:
    """Whether every task a cached record evaluated has the version installed now."""
    for record in records:
        for task, version in (record.get("task_versions") or {}).items():
            if task in installed and installed[task] != version:
                return False
    return True


def _chance(evaluator, record: dict) -> dict[str, float]:
    """Chance accuracy of each ranked-choice task on the documents scored, and of each
    group as its (unweighted) mean over leaves, as lm-eval aggregates the group."""
    from ecomharness.tasks.choice import chance_accuracy

    chance = {}
    for name, task in evaluator.loaded["tasks"].items():
        if task.get_config("output_type") == "multiple_choice":
            chance[name] = chance_accuracy(task, (evaluator.subset.get(name) or {}).get("indices"))
    for group, members in record.get("group_subtasks", {}).items():
        if members and all(m in chance for m in members):
            chance[group] = sum(chance[m] for m in members) / len(members)
    return chance


def run_cpt(out: Path, name: str, base: Path, base_records: list[dict], tokenizer: Path, data: Path,
            cfg: DemoConfig, every_checkpoint: bool, log=print,
            base_folder: Path | None = None) -> tuple[list[dict], dict]:
    """CPT of the base on ``data``, the inline profile evaluated in the loop and the async
    one by ``watch`` after it; returns the run's records, one per checkpoint with both
    profiles read together (init first), and the training summary. ``base_folder`` holds the files
    ``base_records`` reference (their per-document scores)."""
    from ecomharness.evaluation.ledger import append_record, latest_ok_records, ledger_path, read_ledger
    from ecomharness.train.run import run_training
    from ecomharness.train.watch import watch_run

    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    save = cfg.cpt_steps // cfg.checkpoints if every_checkpoint else cfg.cpt_steps
    gate = str(bundled_path("train") / "gates" / "default.yaml")
    recipe = _train_recipe(run_dir, {"path": str(base)}, tokenizer, data, cfg.cpt_steps, save, cfg, "inline",
                           True, gate=gate)
    # The base was evaluated once (cached): its records are this run's `init`, not
    # redone; their per-document scores travel with them, for the paired gate.
    for record in base_records:
        if "per_document" in record and base_folder is not None:
            from ecomharness.evaluation.per_document import copy_reference

            copy_reference(record["per_document"], base_folder, ledger_path(run_dir).parent)
        append_record(ledger_path(run_dir), {k: v for k, v in record.items() if k != "chance"})
    done = _stage(f"CPT '{name}' ({cfg.cpt_steps} steps, "
                  f"{'a checkpoint every ' + str(save) + ' steps' if every_checkpoint else 'final checkpoint'}"
                  ", each evaluated inline and gated)", log)
    summary = run_training(recipe, log=lambda *_: None)
    done(f"(training {summary['train_seconds']:.0f}s, inline evaluation {summary['eval_seconds']:.0f}s, "
         f"{summary['eval_seconds'] / max(summary['seconds'], 1e-9):.0%} of the run)")
    done = _stage(f"watch '{name}': the generative suite (async profile) on the final checkpoint", log)
    watched = watch_run(run_dir, once=True, profile="async", log_fn=lambda *_: None)
    done(f"({watched.evaluated} checkpoint(s))")
    return latest_ok_records(read_ledger(ledger_path(run_dir))), summary


def _score(record: dict, group: str, metric: str = "score") -> tuple[float, float | None]:
    measure = record["metrics"][group][metric]
    return measure["value"], measure["stderr"]


def run_demo(out_dir: Path, compare: bool = False, cfg: DemoConfig | None = None, log=print) -> dict:
    """Run every stage into ``out_dir``; return the figures the summary prints."""
    from ecomharness.demo.shop import shop_sources
    from ecomharness.evaluation.ledger import checkpoint_records, ledger_path
    from ecomharness.gate.policy import load_policy
    from ecomharness.gate.checkpoints import against_init
    from ecomharness.gate.verdict import to_markdown
    from ecomharness.registry import gate_rules
    from ecomharness.report.curves import write_report

    cfg = cfg or DemoConfig()
    out = Path(out_dir).resolve()
    cache = out / "cache"
    total = time.perf_counter()
    paths = prepare_corpus(cache, cfg, log)
    tokenizer = prepare_tokenizer(cache, paths, cfg, log)
    general = shop_sources(paths, kinds=("general",))
    ratio_2_1 = {"general_to_domain": 2.0, "general_languages": {"zh": 1, "en": 1}}
    base_data = build_data(cache, "general", general, tokenizer, cfg, ratio={"general_languages": {"zh": 1, "en": 1}},
                           log=log)
    cpt_data = build_data(cache, "graph_2to1", shop_sources(paths), tokenizer, cfg, ratio=ratio_2_1, log=log)
    base = pretrain_base(cache, tokenizer, base_data, cfg, log)
    spec = _train_recipe(out / "x", {"path": str(base)}, tokenizer, cpt_data, 1, 1, cfg, "inline", True).eval
    base_records = evaluate_base(cache, base, spec, log)
    base_record = checkpoint_records(base_records)[0]  # both profiles' init, read as one

    records, summary = run_cpt(out, "cpt_graph", base, base_records, tokenizer, cpt_data, cfg, every_checkpoint=True, log=log,
                      base_folder=cache)
    done = _stage("report and gate", log)
    report = write_report(out / "cpt_graph", out / "report")
    policy = load_policy(bundled_path("train") / "gates" / "default.yaml", known_kinds=set(gate_rules.names()))
    verdict = against_init(policy, records[-1], base_record, f"cpt_graph@{records[-1]['checkpoint']}",
                           folder=ledger_path(out / "cpt_graph").parent)
    (out / "report" / "gate.md").write_text(to_markdown(verdict), encoding="utf-8")
    ecom_test = _paired_gain(records[-1], base_record, ledger_path(out / "cpt_graph").parent)
    done()

    rows = {"base": base_record, "graph (2:1)": records[-1]}
    gates = {"graph (2:1)": verdict.passed}
    if compare:
        variants = {
            "separate (2:1)": (shop_sources(paths), {"name": "separate"}, ratio_2_1),
            "domain only": (shop_sources(paths, kinds=("domain",)), None, {"general_languages": None}),
            "general only": (general, None, {"general_languages": {"zh": 1, "en": 1}}),
        }
        for label, (sources, mixer, ratio) in variants.items():
            slug = label.split(" ")[0]
            data = build_data(cache, slug, sources, tokenizer, cfg, mixer=mixer, ratio=ratio, log=log)
            rows[label] = run_cpt(out, f"cpt_{slug}", base, base_records, tokenizer, data, cfg,
                                  every_checkpoint=False, log=log, base_folder=cache)[0][-1]
            gates[label] = against_init(policy, rows[label], base_record,
                                        folder=ledger_path(out / f"cpt_{slug}").parent).passed
    seconds = time.perf_counter() - total
    chance = {k: v for r in base_records for k, v in (r.get("chance") or {}).items()}
    inline_share = summary["eval_seconds"] / max(summary["seconds"], 1e-9)
    return _summarise(out, rows, gates, verdict, report, seconds, compare, log, ecom_test, chance, inline_share)


def _paired_gain(record: dict, base_record: dict, folder: Path):
    """The paired test of the CPT record's ecom_icl score against the base's, on the same
    documents (a stratified paired bootstrap over the group's tasks), or None when the
    records carry no per-document scores."""
    from ecomharness.gate.evidence import from_record
    from ecomharness.gate.pairing import Unpaired, paired_result

    candidate, baseline = from_record(record, "cpt", folder), from_record(base_record, "base", folder)
    try:
        return paired_result("ecom_icl", "score", candidate, baseline)
    except Unpaired:
        return None


def _cell(record: dict, task: str, metric: str) -> str:
    measure = record.get("metrics", {}).get(task, {}).get(metric)
    if measure is None:
        return "n/a"
    return f"{measure['value']:.4f}" + (f" ± {measure['stderr']:.4f}" if measure["stderr"] is not None else "")


def _change(rows: dict, task: str, metric: str) -> str:
    base, cpt = rows["base"], rows["graph (2:1)"]
    if task not in base.get("metrics", {}) or task not in cpt.get("metrics", {}):
        return f"{task}: not measured"
    b, c = _score(base, task, metric)[0], _score(cpt, task, metric)[0]
    return f"{task} {metric}: base {b:.4f} -> CPT {c:.4f} ({c - b:+.4f})"


# The demo's table: each profile's headline numbers, the metric each is read by.
TABLE = (("ecom_icl", "score"), ("general_icl", "score"), ("ecom_icl_rc", "acc"),
         ("heldout_bpb_domain", "bits_per_byte"), ("heldout_bpb_general_zh", "bits_per_byte"),
         ("heldout_bpb_general_en", "bits_per_byte"))


def _summarise(out: Path, rows: dict, gates: dict, verdict, report: dict, seconds: float, compare: bool, log,
               ecom_test=None, chance: dict | None = None, inline_share: float | None = None) -> dict:
    chance = chance or {}
    base_ecom, base_ecom_se = _score(rows["base"], "ecom_icl")
    cpt_ecom, cpt_ecom_se = _score(rows["graph (2:1)"], "ecom_icl")
    base_gen, _ = _score(rows["base"], "general_icl")
    cpt_gen, _ = _score(rows["graph (2:1)"], "general_icl")
    stderr = (base_ecom_se ** 2 + cpt_ecom_se ** 2) ** 0.5 if base_ecom_se is not None and cpt_ecom_se is not None else None
    gain = cpt_ecom - base_ecom
    # The gate's own paired test: the gain is shown when it is significant at 0.05.
    shown = ecom_test is not None and ecom_test.p < 0.05 and ecom_test.difference > 0
    if compare:
        header = " | ".join(f"{task} {'bpb' if metric == 'bits_per_byte' else metric}" for task, metric in TABLE)
        table = [f"| CPT data | {header} | gate vs base |", "|---|" + "--:|" * len(TABLE) + "---|"]
        for label, record in rows.items():
            gate = "-" if label == "base" else ("pass" if gates.get(label) else "FAIL")
            table.append(f"| {label} | " + " | ".join(_cell(record, t, m) for t, m in TABLE) + f" | {gate} |")
        text = "\n".join(table) + "\n"
        (out / "report" / "compare.md").write_text(text, encoding="utf-8")
        log("")
        log(text)
    tested = [c for c in verdict.checks if c.inputs.get("test")]
    paired = "no per-document scores: no paired test" if ecom_test is None else (
        f"{ecom_test.test} over {ecom_test.n} documents: 95% CI [{ecom_test.ci[0]:+.4f}, {ecom_test.ci[1]:+.4f}], "
        f"p={ecom_test.p:.3g}; a gain smaller than {ecom_test.mde:.4f} could not have been detected")
    rc = _change(rows, "ecom_icl_rc", "acc")
    if "ecom_icl_rc" in chance:
        rc += f"; chance {chance['ecom_icl_rc']:.4f}"
    lines = [
        f"ecom_icl score: base {base_ecom:.4f} -> CPT {cpt_ecom:.4f} (gain {gain:+.4f}; {paired})",
        f"general_icl score: base {base_gen:.4f} -> CPT {cpt_gen:.4f} ({cpt_gen - base_gen:+.4f})",
        f"held-out {_change(rows, 'heldout_bpb_domain', 'bits_per_byte')} (lower is better)",
        f"held-out {_change(rows, 'heldout_bpb_general_zh', 'bits_per_byte')}; "
        f"{_change(rows, 'heldout_bpb_general_en', 'bits_per_byte')}",
        f"ranked choice: {rc}",
        f"gate (train/gates/default.yaml) vs the base: {'PASSED' if verdict.passed else 'FAILED'}"
        + "".join(f"; {c.rule} ({c.task}) decided by {c.inputs['test']} (detectable {c.inputs['mde']:.4f})"
                  for c in tested if c.inputs.get("mde") is not None)
        + ("" if verdict.passed else ": " + "; ".join(c.reason for c in verdict.checks if not c.passed)),
        ("the domain gain is significant on paired evidence: CPT had the intended effect" if shown else
         "this run did NOT show a significant domain gain on paired evidence"),
        (f"inline evaluation took {inline_share:.0%} of the CPT run's wall time" if inline_share is not None else ""),
        f"report: {report['report']} (curves: {report['curves']}); total {seconds:.0f}s",
    ]
    lines = [line for line in lines if line]
    log("")
    for line in lines:
        log(f"[demo] {line}")
    figures = {task: {"base": rows["base"].get("metrics", {}).get(task, {}).get(metric, {}).get("value"),
                      "cpt": rows["graph (2:1)"].get("metrics", {}).get(task, {}).get(metric, {}).get("value"),
                      "metric": metric} for task, metric in TABLE}
    return {"ecom_gain": gain, "ecom_stderr": stderr, "gain_shown": shown,
            "ecom_test": None if ecom_test is None else ecom_test.as_dict(), "gate_passed": verdict.passed,
            "base_ecom": base_ecom, "cpt_ecom": cpt_ecom, "base_general": base_gen, "cpt_general": cpt_gen,
            "figures": figures, "chance": chance, "inline_share": inline_share,
            "seconds": seconds, "summary": lines}
