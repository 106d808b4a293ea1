"""``ecomharness demo --plan``: plan the general:domain mixture on the synthetic shop.

From the demo's cached corpus, tokenizer and base model: a plan over six domain shares,
each point CPT of the base for ``PLAN_STEPS`` steps with held-out bits per byte at four
budgets; the D-CPT law fitted to general and domain loss; the critical mixture ratio at
the grid's final budget; then the base trained at the recommended share and at one far
from it, and each one's measured losses printed beside the law's prediction.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from ecomharness.demo.run import FILTERS, DECONTAMINATE_TASKS, DemoConfig, shop_tasks_dir

PLAN_SHARES = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)
PLAN_STEPS = 80
PLAN_EVALUATIONS = 4
# The base was trained at 3e-3 down to 0: CPT restarting at that rate spikes general loss
# (measured: 0.19 -> 1.3 bits per byte after 10 steps at any share), which a short proxy
# run does not recover from, and the shares' differences drown in it; at 1e-3 general
# loss still went 0.19 -> 0.46-0.96 at step 20 and the law predicted a left-out share's
# general loss 12% off. At 3e-4 it rises smoothly with the domain share.
PLAN_LEARNING_RATE = 3e-4
# General loss may rise 5% over its value at the smallest share measured.
PLAN_TOLERANCE = 0.05
PLAN_BOOTSTRAP = 100


def _write_inputs(root: Path, cache: Path, paths: dict, tokenizer: Path, base: Path, cfg: DemoConfig) -> Path:
    """The plan's data recipe, proxy recipe and plan file under ``root``."""
    from ecomharness.demo.shop import shop_sources

    root.mkdir(parents=True, exist_ok=True)
    data = {"output": str(root / "unused"), "tokenizer": str(tokenizer), "seq_len": cfg.seq_len, "seed": cfg.seed,
            "sources": shop_sources(paths, filters=list(FILTERS)),
            "mixer": {"name": "graph", "min_records": 2, "max_records": 8},
            "heldout": {"share": cfg.heldout_share, "max_documents": cfg.heldout_documents},
            "dedup": {"exact": True, "near": True},
            "decontaminate": {"tasks": list(DECONTAMINATE_TASKS), "threshold": 0.5,
                              "metadata": {"ecominstruct_dir": str(shop_tasks_dir(cache))}}}
    # The proxy is the demo's base itself, without DeepSpeed: one process, and the
    # shortest steps on a CPU (the demo's own CPT shows the ZeRO-2 path).
    train = {"mode": "cpt", "run_dir": str(root / "unused"), "model": {"path": str(base)},
             "tokenizer": str(tokenizer), "data": {"path": str(root / "unused")},
             "training": {"max_steps": PLAN_STEPS, "per_device_train_batch_size": cfg.batch_size,
                          "learning_rate": PLAN_LEARNING_RATE, "lr_scheduler_type": "cosine",
                          "warmup_steps": PLAN_STEPS // 10, "weight_decay": 0.0, "logging_steps": 10,
                          "seed": cfg.seed},
             "deepspeed": None, "eval": {"mode": "off"}}
    plan = {"output": str(root), "data": "data.yaml", "train": "proxy.yaml", "seed": cfg.seed,
            "grid": {"domain_shares": list(PLAN_SHARES), "evaluations": PLAN_EVALUATIONS}}
    for name, payload in (("data.yaml", data), ("proxy.yaml", train), ("plan.yaml", plan)):
        (root / name).write_text(yaml.safe_dump(payload, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root / "plan.yaml"


def far_share(recommended: float, low: float, high: float) -> float:
    """A share far from the recommended one, inside the measured range and off the grid."""
    far = recommended + 0.4 if recommended <= (low + high) / 2 else recommended - 0.4
    far = min(max(far, low + 0.02), high - 0.02)
    return round(far if round(far, 3) not in PLAN_SHARES else far + 0.03, 3)


def _final_losses(folder: Path, losses: dict) -> dict[str, float]:
    """The last evaluated checkpoint's losses (as ``plan fit`` reads them) and tokens."""
    from ecomharness.errors import UserError
    from ecomharness.evaluation.ledger import ledger_path, read_ledger
    from ecomharness.plan.layout import PlanLayout
    from ecomharness.plan.observations import record_losses

    records = [r for r in read_ledger(ledger_path(PlanLayout.run_dir(folder))) if r.get("status") == "ok"]
    last = max(records, key=lambda r: r["step"])
    values = record_losses(last, losses)
    if values is None:
        raise UserError(f"{folder}: its last checkpoint lacks a held-out loss")
    return {"general": values["general_loss"], "domain": values["domain_loss"], "tokens": last["tokens_seen"]}


def run_plan_demo(out_dir: Path, cfg: DemoConfig | None = None, log=print, name: str = "plan") -> dict:
    """Run the demo's mixture plan into ``out_dir/name``; return the figures printed."""
    from ecomharness.demo.run import prepare_base
    from ecomharness.plan.fit import fit_observations, load_fit, predict_losses, recommend
    from ecomharness.plan.observations import from_plan_dir
    from ecomharness.plan.report import write_outputs
    from ecomharness.plan.run import check_point, run_plan
    from ecomharness.plan.spec import load_plan
    from ecomharness.util import write_json_atomic

    cfg = cfg or DemoConfig()
    out = Path(out_dir).resolve()
    cache = out / "cache"
    start = time.perf_counter()
    paths, tokenizer, base = prepare_base(cache, cfg, log)
    plan = load_plan(_write_inputs(out / name, cache, paths, tokenizer, base, cfg))
    run_plan(plan, log=log)
    observations = from_plan_dir(plan.output, log)
    # The first budget (step PLAN_STEPS / PLAN_EVALUATIONS, just past the warmup) is still
    # in the re-warming transient (general loss 0.20-0.24 there, then 0.23-0.35 and flat).
    budgets = sorted({o.tokens for o in observations})
    fit_raw = fit_observations(observations, min_tokens=budgets[1], log=log)
    write_json_atomic(plan.output / "fit.json", fit_raw)
    fit = load_fit(fit_raw, str(plan.output / "fit.json"))
    tokens = fit.ranges["tokens"][1]
    result = recommend(fit, tokens, PLAN_TOLERANCE, bootstrap=PLAN_BOOTSTRAP, seed=cfg.seed)
    files = write_outputs(fit, result, plan.output / "recommend")
    result.pop("_curves")
    lines = []
    if result["domain_share"] is None:
        lines.append(f"no domain share qualifies at {tokens:,.0f} tokens: {result['reason']}")
        checks = []
    else:
        interval = result["interval"]
        lines.append(f"recommended domain share {result['domain_share']:.3f}"
                     + (f" (95% bootstrap interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
                     + f" at {tokens:,.0f} tokens, general loss within {PLAN_TOLERANCE:.0%} of its value at share "
                     f"{result['reference_share']:g}")
        low, high = fit.ranges["domain_share"]
        checks = [result["domain_share"], far_share(result["domain_share"], low, high)]
    figures = {"loso": {side: fit_raw[side]["loso"]["mean_abs_rel_error"] for side in ("general", "domain")},
               "r_squared": {side: fit_raw[side]["r_squared"] for side in ("general", "domain")},
               "recommendation": result, "checks": []}
    lines.append("leave-one-share-out mean absolute relative error: general "
                 f"{figures['loso']['general']:.2%}, domain {figures['loso']['domain']:.2%}")
    for share in checks:
        folder = check_point(plan, share, log)
        measured = _final_losses(folder, plan.losses)
        predicted = predict_losses(fit, share, measured["tokens"])
        row = {"domain_share": share, "tokens": measured["tokens"]}
        for side in ("general", "domain"):
            row[side] = {"predicted": predicted[f"{side}_loss"], "observed": measured[side],
                         "error": (predicted[f"{side}_loss"] - measured[side]) / measured[side]}
        figures["checks"].append(row)
        lines.append(f"domain share {share:.3f}: general bpb predicted {row['general']['predicted']:.4f}, observed "
                     f"{row['general']['observed']:.4f} ({row['general']['error']:+.1%}); domain bpb predicted "
                     f"{row['domain']['predicted']:.4f}, observed {row['domain']['observed']:.4f} "
                     f"({row['domain']['error']:+.1%})")
    lines.append(f"curves: {files['curves']}; table: {files['table']}; total {time.perf_counter() - start:.0f}s")
    write_json_atomic(plan.output / "demo_figures.json", figures)
    log("")
    for line in lines:
        log(f"[demo --plan] {line}")
    figures["summary"] = lines
    return figures
