"""Type-I error and power of the gate's paired tests against the unpaired z-test, by simulation.

    .venv/bin/python benchmarks/gate/power_curves.py [--sims 2000] [--out docs/paired_power.png]

Binary metric (accuracy): n documents, both models right on a share of them, the two
disagreeing on a share ``discordance`` (positively correlated pairs, as two checkpoints
of one model are); the candidate's true gain ``effect`` splits the discordant documents.
Tests: exact McNemar (mid-p, the gate's), exact McNemar (plain), and the unpaired z-test
on the two standard errors (what the gate used before).

Continuous metric (ROUGE-like, in [0, 1]): a shared document difficulty plus each
model's own noise, and the candidate shifted by ``effect``. Tests: the paired bootstrap
(the gate's; 2,000 resamples per simulation here, 10,000 in the gate) and the unpaired
z-test.

Prints the type-I error at alpha 0.05 (effect 0) for every test and writes the power
curves to one PNG.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ecomharness.gate.paired import mcnemar, paired_bootstrap
from ecomharness.metrics.corpus import _mean as mean_form

ALPHA = 0.05


def binary_pairs(rng, sims: int, n: int, discordance: float, effect: float):
    """``sims`` simulated (candidate, baseline) 0/1 score arrays of ``n`` documents."""
    base = rng.random((sims, n)) < 0.5
    disc = rng.random((sims, n)) < discordance
    gain = rng.random((sims, n)) < 0.5 + effect / (2 * discordance)
    cand = np.where(disc, gain, base)
    base = np.where(disc, ~gain, base)
    return cand.astype(float), base.astype(float)


def continuous_pairs(rng, sims: int, n: int, effect: float):
    """Per-document scores with a shared difficulty (correlation about 0.8)."""
    shared = rng.random((sims, n))
    cand = np.clip(shared + effect + rng.normal(0, 0.15, (sims, n)), 0, 1)
    base = np.clip(shared + rng.normal(0, 0.15, (sims, n)), 0, 1)
    return cand, base


def unpaired_p(c: np.ndarray, b: np.ndarray) -> float:
    """The unpaired z-test of two means on their sample standard errors."""
    n = len(c)
    se = math.sqrt(c.var(ddof=1) / n + b.var(ddof=1) / n)
    if se == 0:
        return 1.0
    return math.erfc(abs(c.mean() - b.mean()) / se / math.sqrt(2))


def rejection_rates(pairs, tests: dict) -> dict[str, float]:
    """Share of simulations each test rejects at alpha."""
    cand, base = pairs
    return {name: float(np.mean([test(c, b) < ALPHA for c, b in zip(cand, base)])) for name, test in tests.items()}


BINARY = {
    "McNemar mid-p (gate)": lambda c, b: mcnemar(c, b).p,
    "McNemar exact": lambda c, b: mcnemar(c, b, mid_p=False).p,
    "unpaired z": unpaired_p,
}


def continuous_tests(resamples: int):
    """The continuous tests, the bootstrap seeded per simulation."""
    counter = iter(range(10**9))
    return {
        "paired bootstrap (gate)": lambda c, b: paired_bootstrap(
            [(mean_form(c), mean_form(b), 1.0)], ALPHA, resamples, seed=next(counter)).p,
        "unpaired z": unpaired_p,
    }


def main() -> None:
    """Print the type-I errors and write the power curves."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=2000)
    parser.add_argument("--power-sims", type=int, default=500)
    parser.add_argument("--n", type=int, default=400, help="documents per simulated task (binary)")
    parser.add_argument("--n-continuous", type=int, default=200)
    parser.add_argument("--discordance", type=float, default=0.2)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", default="docs/paired_power.png")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)

    print(f"type-I error at alpha {ALPHA} ({args.sims} simulations each):")
    binary = rejection_rates(binary_pairs(rng, args.sims, args.n, args.discordance, 0.0), BINARY)
    for name, rate in binary.items():
        print(f"  binary, n={args.n}, discordance {args.discordance}: {name}: {rate:.4f}")
    continuous = rejection_rates(continuous_pairs(rng, args.sims, args.n_continuous, 0.0),
                                 continuous_tests(args.resamples))
    for name, rate in continuous.items():
        print(f"  continuous, n={args.n_continuous}: {name}: {rate:.4f}")

    effects_binary = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08]
    effects_continuous = [0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04]
    curves_binary = {name: [] for name in BINARY}
    curves_continuous = {name: [] for name in continuous_tests(args.resamples)}
    for effect in effects_binary:
        rates = rejection_rates(binary_pairs(rng, args.power_sims, args.n, args.discordance, effect), BINARY)
        for name, rate in rates.items():
            curves_binary[name].append(rate)
    for effect in effects_continuous:
        rates = rejection_rates(continuous_pairs(rng, args.power_sims, args.n_continuous, effect),
                                continuous_tests(args.resamples))
        for name, rate in rates.items():
            curves_continuous[name].append(rate)
    print(f"power ({args.power_sims} simulations per point):")
    for effect, *rates in zip(effects_binary, *curves_binary.values()):
        print(f"  binary effect {effect:.2f}: " + ", ".join(f"{n} {r:.3f}" for n, r in zip(curves_binary, rates)))
    for effect, *rates in zip(effects_continuous, *curves_continuous.values()):
        print(f"  continuous effect {effect:.3f}: "
              + ", ".join(f"{n} {r:.3f}" for n, r in zip(curves_continuous, rates)))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rates in curves_binary.items():
        axes[0].plot(effects_binary, rates, marker="o", label=name)
    axes[0].set_title(f"accuracy, n={args.n}, {args.discordance:.0%} of documents discordant")
    for name, rates in curves_continuous.items():
        axes[1].plot(effects_continuous, rates, marker="o", label=name)
    axes[1].set_title(f"ROUGE-like scores, n={args.n_continuous}, correlated pairs")
    for ax in axes:
        ax.axhline(ALPHA, color="grey", linewidth=0.8, linestyle=":")
        ax.axhline(0.8, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlabel("true difference (candidate - baseline)")
        ax.set_ylabel(f"rejection rate at alpha {ALPHA}")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
