"""How often a gate's verdict at an intermediate checkpoint equals the final one, with and
without the checkpoint-noise rule, and the signal-to-noise table across runs.

    .venv/bin/python benchmarks/gate/verdict_stability.py RUN_DIR [RUN_DIR ...] \
        [--policy train/gates/default.yaml] [--last 3] [--k 2]

For each run: every trained checkpoint with at least ``--last`` trained checkpoints up to
it is gated against the run's init with the policy as written, and again with
``noise: {last, k}`` added to every min_gain and max_drop rule; each verdict is compared
with the same policy's verdict on the run's last checkpoint. Prints, per run and
variant, the checkpoints gated and the share whose verdict equals the final one; then
``report --compare``'s signal / noise / SNR table over the runs (Heineman et al., 2025).
The demo's runs (``ecomharness demo --compare``, runs/demo/cpt_*) are the intended
input.
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


def stability(run_dir: Path, raw_policy: dict, last: int, k: float) -> dict[str, tuple[int, int]]:
    """Per variant (``as written``, ``with noise``): (checkpoints gated, verdicts equal to
    the final checkpoint's)."""
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
        out[name] = (len(gated), sum(1 for v in gated if v == final))
    return out


def main() -> None:
    """Print the agreement table per run and the SNR table across the runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--policy", default="train/gates/default.yaml")
    parser.add_argument("--last", type=int, default=3)
    parser.add_argument("--k", type=float, default=2.0)
    args = parser.parse_args()
    raw = yaml.safe_load(Path(args.policy).read_text(encoding="utf-8"))
    print("| run | variant | intermediate checkpoints gated | verdict equals the final one |")
    print("|---|---|--:|--:|")
    for run in args.runs:
        for variant, (gated, equal) in stability(run, raw, args.last, args.k).items():
            share = f"{equal / gated:.2f}" if gated else "n/a"
            print(f"| {run.name} | {variant} | {gated} | {equal} ({share}) |")
    if len(args.runs) >= 2:
        from ecomharness.report.curves import compare_runs

        print()
        print(compare_runs([str(r) for r in args.runs], noise_last=args.last))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    main()
