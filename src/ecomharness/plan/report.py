"""What ``plan recommend`` writes beside its answer: the predicted curves over the
domain share with the observations on them (PNG), and predicted against observed for
every observation (markdown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecomharness.plan.fit import SIDES, LoadedFit
from ecomharness.util import write_text_atomic


def observed_table(fit: LoadedFit, recommendation: dict) -> str:
    """Markdown: the recommendation, then each observation's measured and predicted
    losses with the relative error."""
    rec = recommendation
    lines = ["# Mixture plan: recommendation", ""]
    if rec["domain_share"] is None:
        lines.append(f"No domain share qualifies at {rec['tokens']:,.0f} tokens: {rec['reason']}.")
    else:
        interval = rec["interval"]
        lines.append(f"Domain share **{rec['domain_share']:.3f}** at {rec['tokens']:,.0f} tokens"
                     + (f" (95% bootstrap interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else
                        " (too few bootstrap resamples chose a share for an interval)")
                     + f": {rec['reason']}. Predicted general loss {rec['general_loss']:.4f} (limit "
                     f"{rec['general_loss_limit']:.4f}, {rec['tolerance']:.1%} over {rec['reference_general_loss']:.4f} "
                     f"at share {rec['reference_share']:g}); predicted domain loss {rec['domain_loss']:.4f}.")
    boot = rec["bootstrap"]
    lines += ["", f"Bootstrap: {boot['resamples']} resamples of the observations (seed {boot['seed']}); "
                  f"{boot['chosen']} chose a share, {boot['no_share']} found none, {boot['unfitted']} could not be fitted.",
              "", "| point | checkpoint | domain share | tokens | general observed | general predicted | error | "
                  "domain observed | domain predicted | error |", "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for o in sorted(fit.observations, key=lambda o: (o.model_params, o.domain_share, o.tokens)):
        n = o.model_params if fit.form.n_term else None
        cells = []
        for side in SIDES:
            measured = getattr(o, f"{side}_loss")
            predicted = float(fit.loss(side, o.domain_share, o.tokens, n))
            cells += [f"{measured:.4f}", f"{predicted:.4f}", f"{(predicted - measured) / measured:+.2%}"]
        lines.append(f"| {o.labels.get('point', '-')} | {o.labels.get('checkpoint', '-')} | {o.domain_share:g} | "
                     f"{o.tokens:,.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw_curves(fit: LoadedFit, recommendation: dict, path: Path) -> None:
    """Two panels (general, domain loss against the domain share): the law at each
    measured budget (thin) and at the asked budget (thick), the observations, the
    general-loss limit and the recommended share with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = recommendation
    n = rec["model_params"]
    low, high = fit.ranges["domain_share"]
    shares = np.linspace(low, high, 201)
    budgets = sorted({o.tokens for o in fit.observations if not fit.form.n_term or o.model_params == n})
    colours = plt.cm.viridis(np.linspace(0, 0.85, max(len(budgets), 1)))
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, side in zip(axes, SIDES):
        for colour, tokens in zip(colours, budgets):
            axis.plot(shares, fit.loss(side, shares, tokens, n), color=colour, linewidth=0.8)
            seen = [o for o in fit.observations if o.tokens == tokens and (not fit.form.n_term or o.model_params == n)]
            axis.scatter([o.domain_share for o in seen], [getattr(o, f"{side}_loss") for o in seen], color=colour,
                         s=14, label=f"{tokens:,.0f} tokens")
        axis.plot(shares, fit.loss(side, shares, rec["tokens"], n), color="black", linewidth=2,
                  label=f"law at {rec['tokens']:,.0f} tokens")
        if rec["domain_share"] is not None:
            axis.axvline(rec["domain_share"], color="crimson", linestyle="--", linewidth=1, label="recommended share")
            if rec["interval"]:
                axis.axvspan(*rec["interval"], color="crimson", alpha=0.1)
        axis.set_xlabel("domain share of training tokens")
        axis.set_ylabel(f"{side} held-out loss")
        axis.set_title(f"{side} loss")
    axes[0].axhline(rec["general_loss_limit"], color="grey", linestyle=":", linewidth=1,
                    label=f"limit (+{rec['tolerance']:.0%})")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(fit: LoadedFit, recommendation: dict, out_dir: Path) -> dict[str, Path]:
    """``curves.png`` and ``table.md`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"curves": out_dir / "curves.png", "table": out_dir / "table.md"}
    draw_curves(fit, recommendation, paths["curves"])
    write_text_atomic(paths["table"], observed_table(fit, recommendation))
    return paths
