"""``plan run``: build the data once, draw every grid point from it, train the points.

The data recipe's domain sources and general sources are built once each (read,
cleaned, tokenized, packed, held-out text set aside: ``data build``, unchanged). A
point draws its blocks from the two builds, the share of domain blocks being its
domain share (blocks are all ``seq_len`` tokens, so block shares are token shares);
nothing is read or tokenized again. Draws are nested: one seeded order per build, and a
point takes its first blocks in that order, so a larger domain share sees the smaller
one's domain blocks and more.

Each point is a plain training run (its recipe is the proxy's, with the point's data,
budget and a held-out bits-per-byte profile in the loop, every save one token budget),
so a cluster runs the printed commands as they are, and a killed plan resumes: a
finished point is never trained again, an unfinished one resumes from its last
checkpoint (``train``'s own resume).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ecomharness.errors import UserError
from ecomharness.plan.layout import POINT, PlanLayout
from ecomharness.plan.spec import Plan
from ecomharness.util import write_json_atomic, write_text_atomic

SIDES = ("domain", "general")


def plan_key(plan: Plan, data_fingerprint: str, train_raw: dict) -> dict:
    """What shapes a plan's points: a resumed run must match it (``parallel`` aside)."""
    return {"domain_shares": list(plan.grid.domain_shares), "evaluations": plan.grid.evaluations,
            "max_steps": plan.grid.max_steps, "models": [dict(m) for m in plan.grid.models], "seed": plan.seed,
            "losses": {k: list(v) for k, v in plan.losses.items()}, "data_fingerprint": data_fingerprint,
            "train_recipe": hashlib.sha256(json.dumps(train_raw, sort_keys=True, default=str).encode()).hexdigest()[:16]}


def _check_manifest(layout: PlanLayout, key: dict) -> None:
    if not layout.manifest.is_file():
        write_json_atomic(layout.manifest, key)
        return
    old = layout.read_manifest()
    changed = sorted(k for k in key if old.get(k) != json.loads(json.dumps(key[k])))
    if changed:
        raise UserError(f"{layout.root} holds another plan (differs in {', '.join(changed)}); use another output "
                        "or delete the old plan")


def side_recipes(plan: Plan, layout: PlanLayout):
    """The data recipe's two builds: its domain sources alone and its general sources
    alone, each with the recipe's cleaning, held-out split and tokenizer."""
    from ecomharness.data.recipe import RatioSpec, load_recipe

    recipe = load_recipe(plan.data)
    if recipe.heldout is None:
        raise UserError(f"{plan.data}: the plan measures losses on held-out text: give the data recipe a "
                        "`heldout` block (docs/data.md)")
    sources = {side: tuple(s for s in recipe.sources if s.kind == side) for side in SIDES}
    for side, found in sources.items():
        if not found:
            raise UserError(f"{plan.data}: no {side} source; a mixture plan needs domain and general sources")
    ratios = {"domain": RatioSpec(general_to_domain=None, general_languages=None),
              "general": RatioSpec(general_to_domain=None, general_languages=recipe.ratio.general_languages)}
    return recipe, {side: dataclasses.replace(recipe, output=layout.build(side), sources=sources[side],
                                              ratio=ratios[side]) for side in SIDES}


def _build_once(recipe, side: str, log) -> dict:
    """The build of one side, unless the output already holds this recipe's build."""
    from ecomharness.data import layout as data_layout
    from ecomharness.data.build import build_dataset

    stats_file = data_layout.stats_file(recipe.output)
    if stats_file is not None:
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        if stats.get("recipe_fingerprint") == recipe.fingerprint():
            log(f"[plan] data {side}: built already ({stats['packing']['blocks']:,} blocks)")
            return stats
    start = time.perf_counter()
    stats = build_dataset(recipe, force=True, log=lambda *_: None)
    log(f"[plan] data {side}: {stats['packing']['blocks']:,} blocks of {recipe.seq_len} tokens "
        f"in {time.perf_counter() - start:.1f}s")
    return stats


def _gather_heldout(layout: PlanLayout, losses: dict) -> None:
    """Both builds' held-out folders under one ``heldout/``, as the bits-per-byte
    tasks read them (``heldout_dir``); every loss task's folder must be there."""
    from ecomharness.data import layout as data_layout

    for side in SIDES:
        source = layout.build(side) / data_layout.HELDOUT
        if not source.is_dir():
            raise UserError(f"{layout.build(side)}: the build wrote no held-out text")
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            target = layout.heldout / folder.name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(folder, target)
    for side, tasks in losses.items():
        for task in tasks:
            folder = task.removeprefix("heldout_bpb_")
            if task.startswith("heldout_bpb_") and not (layout.heldout / folder).is_dir():
                have = ", ".join(sorted(p.name for p in layout.heldout.iterdir())) or "none"
                raise UserError(f"losses.{side}: {task} reads held-out folder {folder!r}, which the builds did "
                                f"not write (they wrote: {have})")


def nested_draw(size: int, count: int, seed: int, side: str) -> np.ndarray:
    """``count`` block indices out of ``size``: the first ``count`` of one seeded order
    of the build (repeated whole when ``count`` exceeds ``size``)."""
    if count == 0:
        return np.zeros(0, np.int64)
    if size == 0:
        raise UserError(f"the {side} build holds no blocks to draw from")
    order = np.random.default_rng([seed, SIDES.index(side)]).permutation(size)
    return np.tile(order, -(-count // size))[:count].astype(np.int64)


def write_point_data(folder: Path, share: float, blocks: int, builds: dict, stats: dict, seed: int) -> dict:
    """A point's blocks as a ``data build`` output (``dataset/`` and ``stats.json``),
    written whole or not at all."""
    import datasets

    counts = {"domain": int(round(share * blocks))}
    counts["general"] = blocks - counts["domain"]
    drawn = {side: nested_draw(len(builds[side]), counts[side], seed, side) for side in SIDES}
    parts = [builds[side].select(drawn[side]) for side in SIDES if counts[side]]
    mixed = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    temporary = folder.with_name(folder.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    mixed.save_to_disk(str(temporary / "dataset"))
    tokenizer = stats["domain"].get("tokenizer_fingerprint")
    if tokenizer != stats["general"].get("tokenizer_fingerprint"):
        raise UserError("the domain and general builds were tokenized with different vocabularies")
    point = {"domain_share": share, "blocks": counts,
             "epochs": {side: counts[side] / max(len(builds[side]), 1) for side in SIDES},
             "builds": {side: stats[side]["recipe_fingerprint"] for side in SIDES}, "seed": seed}
    report = {"tokenizer": stats["domain"].get("tokenizer"), "tokenizer_fingerprint": tokenizer,
              "seq_len": stats["domain"].get("seq_len"), "plan_point": point,
              "packing": {"blocks": blocks, "tokens": blocks * len(mixed[0]["input_ids"])}}
    write_json_atomic(temporary / "stats.json", report)
    shutil.rmtree(folder, ignore_errors=True)
    temporary.rename(folder)
    return point


def _point_id(share: float, model_index: int | None) -> str:
    return ("" if model_index is None else f"model{model_index}-") + f"share{share:.3f}"


def point_recipe(train_raw: dict, point_dir: Path, layout: PlanLayout, plan: Plan, model: dict | None) -> dict:
    """The proxy's recipe for one point: its data, budget, saves and held-out profile."""
    raw = copy.deepcopy(train_raw)
    raw["run_dir"] = str(PlanLayout.run_dir(point_dir))
    raw["data"] = {**{k: v for k, v in (raw.get("data") or {}).items() if k not in ("path", "instruction_dirs")},
                   "path": str(point_dir / "data")}
    if model is not None:
        raw["model"] = dict(model)
    training = raw.setdefault("training", {})
    max_steps = plan.grid.max_steps or training.get("max_steps")
    if not isinstance(max_steps, int) or max_steps < plan.grid.evaluations:
        raise UserError(f"{plan.train}: training.max_steps ({max_steps}) must be set and at least grid.evaluations "
                        f"({plan.grid.evaluations}), or give grid.max_steps")
    training["max_steps"] = max_steps
    training["save_steps"] = max_steps // plan.grid.evaluations
    # Budgets are recorded when they are evaluated; older checkpoints are only needed to resume.
    training.setdefault("save_total_limit", 2)
    inline = ((train_raw.get("eval") or {}).get("inline") or {})
    tasks = sorted({t for side in plan.losses.values() for t in side})
    raw["eval"] = {"on_start": False, "every_n_saves": 1,
                   "inline": {"tasks": tasks, "batch_size": inline.get("batch_size", 8),
                              "metadata": {"heldout_dir": str(layout.heldout)}}}
    return raw


def _blocks_per_run(raw: dict) -> int:
    training = raw["training"]
    return (training["max_steps"] * training.get("per_device_train_batch_size", 8)
            * training.get("gradient_accumulation_steps", 1))


def _make_point(folder: Path, share: float, model_index: int, raw: dict, builds: dict, stats: dict,
                seed: int) -> dict:
    """Write a point: its recipe, its blocks, then ``point.json`` (last: its presence
    says the point is complete). Returns what was drawn."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "recipe.yaml", yaml.safe_dump(raw, allow_unicode=True, sort_keys=True))
    drawn = write_point_data(folder / "data", share, _blocks_per_run(raw), builds, stats, seed)
    write_json_atomic(folder / POINT, {"id": folder.name, "model_index": model_index, "model": raw["model"],
                                       "max_steps": raw["training"]["max_steps"],
                                       "save_steps": raw["training"]["save_steps"], **drawn})
    return drawn


def prepare(plan: Plan, log=print) -> list[Path]:
    """Everything before training: the two builds, the held-out folders, and each
    point's blocks, recipe and ``point.json`` (each written once). Returns the point
    folders in grid order."""
    import datasets

    from ecomharness.data import layout as data_layout
    from ecomharness.train.recipe import load_recipe as load_train, parse_recipe as parse_train

    layout = PlanLayout(plan.output)
    train = load_train(plan.train)
    if train.mode != "cpt":
        raise UserError(f"{plan.train}: a mixture plan trains CPT proxies (mode: cpt), got mode {train.mode}")
    train_raw = train.to_raw()
    data_recipe, sides = side_recipes(plan, layout)
    layout.root.mkdir(parents=True, exist_ok=True)
    _check_manifest(layout, plan_key(plan, data_recipe.fingerprint(), train_raw))
    stats = {side: _build_once(recipe, side, log) for side, recipe in sides.items()}
    _gather_heldout(layout, plan.losses)
    builds = {side: datasets.load_from_disk(str(data_layout.dataset_dir(layout.build(side)))) for side in SIDES}
    models = list(plan.grid.models) or [None]
    folders = []
    for model_index, model in enumerate(models):
        for share in plan.grid.domain_shares:
            point_id = _point_id(share, model_index if model is not None else None)
            folder = layout.point(point_id)
            raw = point_recipe(train_raw, folder, layout, plan, model)
            recipe_path = folder / "recipe.yaml"
            parse_train(raw, where=str(recipe_path))
            folders.append(folder)
            if (folder / POINT).is_file():
                continue
            drawn = _make_point(folder, share, model_index, raw, builds, stats, plan.seed)
            log(f"[plan] point {point_id}: {drawn['blocks']['domain']:,} domain + {drawn['blocks']['general']:,} "
                f"general blocks ({drawn['epochs']['domain']:.2f} and {drawn['epochs']['general']:.2f} epochs of "
                "the builds)")
    return folders


def check_point(plan: Plan, share: float, log=print) -> Path:
    """Train the plan's proxy at one more domain share, outside the grid (to check a
    recommendation against what the law predicts): ``OUTPUT/checks/shareS``, drawn
    from the same builds as the grid and trained for the same budget; never read by
    ``plan fit``. Returns the point folder (its run directory holds the ledger)."""
    import datasets

    from ecomharness.data import layout as data_layout
    from ecomharness.train.recipe import load_recipe as load_train, parse_recipe as parse_train
    from ecomharness.train.run import run_training
    from ecomharness.train.run_dir import done_marker
    from ecomharness.util import check_share

    share = check_share(share, "check share")
    layout = PlanLayout(plan.output)
    layout.read_manifest()  # the grid was prepared: its builds are there
    stats = {side: json.loads(data_layout.stats_file(layout.build(side)).read_text(encoding="utf-8")) for side in SIDES}
    builds = {side: datasets.load_from_disk(str(data_layout.dataset_dir(layout.build(side)))) for side in SIDES}
    folder = layout.root / "checks" / _point_id(share, None)
    raw = point_recipe(load_train(plan.train).to_raw(), folder, layout, plan, (plan.grid.models or [None])[0])
    if not (folder / POINT).is_file():
        parse_train(raw, where=str(folder / "recipe.yaml"))
        _make_point(folder, share, 0, raw, builds, stats, plan.seed)
    if not done_marker(PlanLayout.run_dir(folder)).is_file():
        start = time.perf_counter()
        log(f"[plan] check at domain share {share:g}: training ...")
        run_training(load_train(folder / "recipe.yaml"), log=lambda *_: None)
        log(f"[plan] check at domain share {share:g}: {time.perf_counter() - start:.1f}s")
    return folder


def train_command(point_dir: Path) -> str:
    """The command that trains one point, wherever the plan directory is mounted."""
    return f"ecomharness train {point_dir / 'recipe.yaml'}"


def run_plan(plan: Plan, print_commands: bool = False, log=print) -> dict:
    """Prepare the plan, then train its unfinished points (or print their commands);
    write ``observations.jsonl`` from whatever the points have recorded."""
    from ecomharness.plan.observations import from_plan_dir, write_jsonl
    from ecomharness.train.run_dir import done_marker

    layout = PlanLayout(plan.output)
    folders = prepare(plan, log)
    pending = [f for f in folders if not done_marker(PlanLayout.run_dir(f)).is_file()]
    for folder in folders:
        if folder not in pending:
            log(f"[plan] point {folder.name}: trained already")
    if print_commands:
        for folder in pending:
            print(train_command(folder))
        return {"points": len(folders), "pending": len(pending), "failed": []}
    failed = _train_points(pending, plan.parallel, log)
    observations = from_plan_dir(layout.root, log)
    write_jsonl(layout.observations, observations)
    log(f"[plan] {len(observations)} observations from {len(folders)} point(s): {layout.observations}")
    return {"points": len(folders), "pending": len(pending), "failed": failed, "observations": len(observations)}


def _train_points(pending: list[Path], parallel: int, log) -> list[str]:
    """Train each point: in this process one after another, or ``parallel`` at a time
    as ``ecomharness train`` subprocesses (each logging to POINT/train.log). Returns
    the points whose training failed."""
    from ecomharness.train.recipe import load_recipe as load_train
    from ecomharness.train.run import run_training

    if parallel == 1:
        for folder in pending:
            start = time.perf_counter()
            log(f"[plan] point {folder.name}: training ...")
            summary = run_training(load_train(folder / "recipe.yaml"), log=lambda *_: None)
            log(f"[plan] point {folder.name}: {summary['global_step']} steps in {time.perf_counter() - start:.1f}s")
        return []

    def train(folder: Path) -> tuple[Path, int]:
        with (folder / "train.log").open("a", encoding="utf-8") as out:
            code = subprocess.call([sys.executable, "-c", "import sys; from ecomharness.cli import main; "
                                    "sys.exit(main())", "train", str(folder / "recipe.yaml")],
                                   stdout=out, stderr=subprocess.STDOUT)
        log(f"[plan] point {folder.name}: " + ("trained" if code == 0 else f"FAILED (exit {code}; "
                                                                           f"see {folder / 'train.log'})"))
        return folder, code

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(train, pending))
    return [folder.name for folder, code in results if code != 0]
