"""How often a gate's verdict at an intermediate checkpoint equals the final one, with and
without the checkpoint-noise rule, and the signal-to-noise table across runs.

    .venv/bin/python benchmarks/gate/verdict_stability.py RUN_DIR [RUN_DIR ...] \
        [--policy train/gates/default.yaml] [--last 3] [--k 2]

For each run: every trained checkpoint with at least ``--last`` trained checkpoints up to
it is gated against the run's init with the policy as written, and again with
``noise: {last, k}`` added to every min_gain and max_drop rule; each verdict is compared
with the same policy's verdict on the run's last checkpoint. Prints, per run and
variant, the checkpoints gated and the share whose verdict equals the final one; then
``report --compare``'s signal / noise / SNR table over the runs (Heineman et al., 2025),
and the same signal over each run's own noise (``within_run_table``).

The runs: the demo's, with more checkpoints than ``ecomharness demo`` keeps (3 in its
2:1 run, the final one only in its baselines: too few for a noise window).
``benchmarks/gate/demo_runs.py OUT --checkpoints 8 --runs graph domain`` trains them
with the demo's own stages (``--cache runs/demo/cache`` reuses a demo's cache); then

    .venv/bin/python benchmarks/gate/verdict_stability.py OUT/cpt_graph OUT/cpt_domain \
        --policy benchmarks/gate/inline_policy.yaml --last 3

``inline_policy.yaml`` is the default gate's rules on what the demo evaluates at every
checkpoint (held-out bits per byte, ecom_icl_rc, shop_rc): the default policy reads
the generative suite, evaluated on the final checkpoint only, so at an intermediate one
it fails on missing tasks.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import yaml


def _with_noise(raw: dict, last: int, k: float) -> dict:
    """The policy with ``noise: {last, k}`` on every comparing rule (joint parts too)."""
    raw = copy.deepcopy(raw)

    def add(rule: dict) -> None:
        if rule.get("kind") in ("min_gain", "max_drop"):
            rule["noise"] = {"last": last, "k": k}
        for part in rule.get("parts") or []:
            add(part)

    for rule in raw.get("rules", []):
        add(rule)
    return raw


def stability(run_dir: Path, raw_policy: dict, last: int, k: float) -> dict[str, tuple[int, int, str]]:
    """Per variant (``as written``, ``with noise``): (checkpoints gated, verdicts equal to
    the final checkpoint's, every gated verdict and the final one in order of step)."""
    from ecomharness.evaluation.checkpoint_names import is_trained
    from ecomharness.gate.evidence import evidence_of, ledger_records, select_record
    from ecomharness.gate.policy import parse_policy
    from ecomharness.gate.verdict import run_gate

    records = ledger_records(run_dir)
    trained = [r for r in records if is_trained(r["checkpoint"]) and r["status"] == "ok"]
    baseline = evidence_of(run_dir, select_record(records, "init", None, str(run_dir)))
    out = {}
    for name, raw in (("as written", raw_policy), ("with noise", _with_noise(raw_policy, last, k))):
        policy = parse_policy(raw, name)
        verdicts = [run_gate(policy, evidence_of(run_dir, r), baseline).passed for r in trained]
        final = verdicts[-1] if verdicts else None
        gated = verdicts[last - 1:-1]
        shown = " ".join("P" if v else "F" for v in gated) + f" / {'P' if final else 'F'}"
        out[name] = (len(gated), sum(1 for v in gated if v == final), shown)
    return out


def within_run_table(runs: list[Path], last: int) -> str:
    """Per task: each run's own noise (relative std of its last ``last`` checkpoints), and
    the signal over the within-run noise (the runs' mean std over their mean score).
    ``report --compare`` pools every run's last scores into one noise, as the paper's
    small-scale code does (allenai/signal-and-noise, snr/snr_simple.py), so the gap
    between the runs counts as noise too: with two runs its SNR cannot exceed 2. Here
    the noise is within each run, as the paper's noise of one model is."""
    from ecomharness.evaluation.noise import checkpoint_noise, signal, signal_to_noise
    from ecomharness.report.curves import drawn_records

    noise = [checkpoint_noise(drawn_records(run), last) for run in runs]
    shared = sorted(set.intersection(*(set(n) for n in noise)))
    lines = [f"| task | metric | signal | {' | '.join(f'noise {r.name}' for r in runs)} | SNR (within-run noise) |",
             "|---|---|--:|" + "--:|" * len(runs) + "--:|"]
    for task in shared:
        if len({n[task]["metric"] for n in noise}) != 1:
            continue
        s = signal([n[task]["mean"] for n in noise])
        each = [n[task]["noise"] for n in noise]
        # Each run's standard deviation over its last checkpoints (the paper's noise of
        # one model), averaged over the runs, over the mean of all their last scores.
        pooled_mean = sum(n[task]["mean"] for n in noise) / len(noise)
        within = sum(n[task]["std"] for n in noise) / len(noise) / abs(pooled_mean) if pooled_mean else None
        snr = signal_to_noise(s, within)
        cells = " | ".join("n/a" if v is None else f"{v:.4f}" for v in each)
        shown = "n/a" if snr is None else "inf" if snr == float("inf") else f"{snr:.1f}"
        lines.append(f"| {task} | {noise[0][task]['metric']} | {'n/a' if s is None else f'{s:.4f}'} | {cells} | "
                     f"{shown} |")
    return "\n".join(lines)


def main() -> None:
    """Print the agreement table per run and the SNR table across the runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--policy", default="train/gates/default.yaml")
    parser.add_argument("--last", type=int, default=3)
    parser.add_argument("--k", type=float, default=2.0)
    args = parser.parse_args()
    raw = yaml.safe_load(Path(args.policy).read_text(encoding="utf-8"))
    print("| run | variant | intermediate checkpoints gated | verdict equals the final one | verdicts (P pass, "
          "F fail) / final |")
    print("|---|---|--:|--:|---|")
    for run in args.runs:
        for variant, (gated, equal, shown) in stability(run, raw, args.last, args.k).items():
            share = f"{equal / gated:.2f}" if gated else "n/a"
            print(f"| {run.name} | {variant} | {gated} | {equal} ({share}) | {shown} |")
    if len(args.runs) >= 2:
        from ecomharness.report.curves import compare_runs

        print()
        print(compare_runs([str(r) for r in args.runs], policy_path=args.policy, noise_last=args.last))
        print(f"The same signal over each run's own noise (last {args.last} checkpoints):")
        print()
        print(within_run_table(args.runs, args.last))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    main()
