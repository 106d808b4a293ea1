"""Checkpoint noise, signal and SNR (evaluation/noise.py) against a direct computation of
Heineman et al.'s definitions, and where report and report --compare show them."""

from __future__ import annotations

import math
import statistics

import pytest

from ecomharness.errors import UserError
from ecomharness.evaluation.ledger import append_record
from ecomharness.evaluation.noise import checkpoint_noise, relative_std, runs_signal, signal, signal_to_noise
from ecomharness.report.curves import compare_runs, write_report


def test_definitions_match_a_direct_computation():
    values = [0.41, 0.44, 0.40, 0.43, 0.42]
    mean = sum(values) / len(values)
    population_std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert relative_std(values) == pytest.approx(population_std / mean)
    assert relative_std(values) == pytest.approx(statistics.pstdev(values) / statistics.fmean(values))
    assert signal([0.30, 0.45, 0.36]) == pytest.approx((0.45 - 0.30) / (1.11 / 3))
    assert signal_to_noise(0.2, 0.05) == pytest.approx(4.0) and signal_to_noise(0.2, 0.0) == math.inf
    # Two runs that score the same at every checkpoint: nothing tells them apart.
    assert signal_to_noise(0.0, 0.0) == 0.0 and signal_to_noise(0.0, 0.05) == 0.0
    assert relative_std([0.5]) is None and relative_std([0.0, 0.0]) is None and signal([0.4]) is None


def _record(name, step, ecom, bpb=None):
    metrics = {"ecom_icl": {"score": {"value": ecom, "stderr": 0.01}}}
    if bpb is not None:
        metrics["heldout_bpb"] = {"bits_per_byte": {"value": bpb, "stderr": None}}
    return {"checkpoint": name, "step": step, "status": "ok", "task_set": "k", "metrics": metrics,
            "general_icl": None, "groups": []}


def _run(root, scores, bpb=None):
    for i, score in enumerate(scores):
        name = "init" if i == 0 else f"checkpoint-{10 * i}"
        append_record(root / "eval" / "ledger.jsonl",
                      _record(name, 10 * i, score, None if bpb is None else bpb[i]))
    return root


def test_checkpoint_noise_is_over_the_last_trained_checkpoints(tmp_path):
    run = _run(tmp_path / "run", [0.10, 0.30, 0.40, 0.42, 0.41, 0.44], bpb=[3.0, 2.0, 1.5, 1.4, 1.45, 1.42])
    from ecomharness.report.curves import drawn_records

    noise = checkpoint_noise(drawn_records(run), last=3)
    assert noise["ecom_icl"]["checkpoints"] == ["checkpoint-30", "checkpoint-40", "checkpoint-50"]
    assert noise["ecom_icl"]["noise"] == pytest.approx(relative_std([0.42, 0.41, 0.44]))
    assert noise["heldout_bpb"]["metric"] == "bits_per_byte"
    assert checkpoint_noise(drawn_records(run), last=6) == {}  # init is not a trained checkpoint
    text = write_report(run, noise_last=3)["report"].read_text()
    assert "## Checkpoint noise" in text
    assert f"| ecom_icl | score | 0.4233 | {statistics.pstdev([0.42, 0.41, 0.44]):.4f} | " in text
    with pytest.raises(UserError, match="--noise-last: expected a whole number >= 3"):
        write_report(run, noise_last=2)


def test_compare_shows_signal_noise_and_their_ratio_across_runs(tmp_path):
    a = _run(tmp_path / "a", [0.10, 0.40, 0.42, 0.41])
    b = _run(tmp_path / "b", [0.10, 0.30, 0.31, 0.29])
    table = compare_runs([a, b], noise_last=3)
    expected = runs_signal({"a": {"ecom_icl": {"metric": "score", "values": [0.40, 0.42, 0.41], "mean": 0.41}},
                            "b": {"ecom_icl": {"metric": "score", "values": [0.30, 0.31, 0.29], "mean": 0.30}}})
    s = expected["ecom_icl"]
    assert s["signal"] == pytest.approx(0.11 / 0.355)
    assert s["noise"] == pytest.approx(relative_std([0.40, 0.42, 0.41, 0.30, 0.31, 0.29]))
    assert f"| ecom_icl | score | {s['signal']:.4f} | {s['noise']:.4f} | {s['snr']:.1f} |" in table


def test_a_gate_rule_requires_the_difference_to_exceed_k_times_the_checkpoint_noise(tmp_path):
    """The candidate's gain over init must exceed k x the std of its run's last N
    checkpoints; a drop within it is not a drop; unknown noise fails closed (``noise``)."""
    from ecomharness.gate.evidence import Evidence, Measure, evidence_of, ledger_records, select_record
    from ecomharness.gate.policy import parse_policy
    from ecomharness.gate.verdict import run_gate

    def gate_of(scores, rule, **top):
        root = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        _run(root, scores)
        records = ledger_records(root)
        candidate = evidence_of(root, select_record(records, "last", None, "candidate"))
        baseline = evidence_of(root, select_record(records, "init", None, "baseline"))
        for side in (candidate, baseline):  # results without per-document scores: the z-test decides
            side.data_sources = {"ecom_icl": {"source": "x", "fingerprint": "f"}}
            side.versions = {"ecom_icl": 1}
        return run_gate(parse_policy({"rules": [rule], "allow": ["unpaired"], **top}), candidate, baseline)

    gain = {"kind": "min_gain", "tasks": ["ecom_icl"], "threshold": 0.0, "noise": {"last": 3, "k": 2}}
    # The last three checkpoints: 0.40, 0.44, 0.42 -> std 0.0163; 2 x = 0.0327.
    quiet = gate_of([0.30, 0.30, 0.40, 0.44, 0.42], gain)
    assert quiet.passed and "beyond 2 x the checkpoint noise (std 0.0163 over the last 3 checkpoints)" in \
        quiet.checks[0].reason
    noisy = gate_of([0.40, 0.30, 0.50, 0.38, 0.42], {**gain, "tasks": ["ecom_icl"]})
    assert not noisy.passed and "[fail-closed: noise]" in noisy.checks[0].reason
    assert noisy.checks[0].inputs["checkpoint_noise"] == pytest.approx(statistics.pstdev([0.50, 0.38, 0.42]))
    drop = {"kind": "max_drop", "tasks": ["ecom_icl"], "threshold": 0.01, "noise": {"last": 3, "k": 2}}
    within = gate_of([0.45, 0.30, 0.50, 0.38, 0.42], drop)
    assert within.passed and "the drop is within 2 x the checkpoint noise" in within.checks[0].reason
    short = gate_of([0.30, 0.40, 0.42], gain)  # two trained checkpoints: no noise figure
    assert not short.passed and "the checkpoint noise is unknown" in short.checks[0].reason
    allowed = gate_of([0.30, 0.40, 0.42], {**gain, "allow": ["noise"]})
    assert allowed.passed and "checkpoint noise not checked (allowed" in allowed.checks[0].reason
    with pytest.raises(UserError, match=r"noise\.last: expected a whole number of checkpoints >= 3"):
        parse_policy({"rules": [{**gain, "noise": {"last": 2, "k": 2}}]})
    # Evidence from a results file has no run to measure noise on.
    lone = Evidence("c", {"ecom_icl": {"score": Measure(0.5, 0.01)}}, {"ecom_icl": 1},
                    {"ecom_icl": {"source": "x", "fingerprint": "f"}})
    base = Evidence("b", {"ecom_icl": {"score": Measure(0.3, 0.01)}}, {"ecom_icl": 1},
                    {"ecom_icl": {"source": "x", "fingerprint": "f"}})
    verdict = run_gate(parse_policy({"rules": [gain], "allow": ["unpaired"]}), lone, base)
    assert not verdict.passed and "[fail-closed: noise]" in verdict.checks[0].reason


def test_each_record_keeps_the_noise_over_the_last_checkpoints_up_to_it(tmp_path):
    """evaluate_and_record writes the noise of the last NOISE_LAST trained checkpoints
    (itself included) into a record once there are that many; an average and the init
    never count, nor carry it."""
    from ecomharness.evaluation.checkpoint import EvalSettings
    from ecomharness.evaluation.ledger import evaluate_and_record, read_ledger
    from ecomharness.evaluation.noise import NOISE_LAST

    ledger = tmp_path / "eval" / "ledger.jsonl"
    settings = EvalSettings(tasks=("ecom_icl",))
    scores = [0.10, 0.30, 0.40, 0.42, 0.41, 0.44, 0.43]

    def results(value):
        return lambda: {"results": {"ecom_icl": {"alias": "ecom_icl", "score,none": value, "score_stderr,none": 0.01}}}

    for i, score in enumerate(scores):
        evaluate_and_record(ledger, settings, "init" if i == 0 else f"checkpoint-{10 * i}", 10 * i, results(score))
    evaluate_and_record(ledger, settings, "average-last-3", 60, results(0.5))
    records = {r["checkpoint"]: r for r in read_ledger(ledger)}
    assert NOISE_LAST == 5
    assert all("noise" not in records[name] for name in ("init", "checkpoint-10", "checkpoint-40", "average-last-3"))
    kept = records["checkpoint-60"]["noise"]
    assert kept["last"] == 5 and kept["tasks"]["ecom_icl"]["metric"] == "score"
    assert kept["tasks"]["ecom_icl"]["noise"] == pytest.approx(relative_std([0.30, 0.40, 0.42, 0.41, 0.44, 0.43][-5:]))
    assert records["checkpoint-50"]["noise"]["tasks"]["ecom_icl"]["noise"] == pytest.approx(
        relative_std([0.30, 0.40, 0.42, 0.41, 0.44]))


def test_a_gate_rule_can_require_a_minimum_signal_to_noise_ratio_across_runs(tmp_path):
    """``noise: {min_snr: S}``: the candidate's and the baseline's runs must be told
    apart by the task (SNR across their last N checkpoints) or the check fails closed
    (``below: skip``: it does not decide); one run alone has no SNR."""
    from ecomharness.gate.evidence import evidence_of, ledger_records, select_record
    from ecomharness.gate.policy import parse_policy
    from ecomharness.gate.verdict import run_gate

    def last_of(name, scores):
        root = _run(tmp_path / name, scores)
        evidence = evidence_of(root, select_record(ledger_records(root), "last", None, name))
        evidence.data_sources = {"ecom_icl": {"source": "x", "fingerprint": "f"}}
        evidence.versions = {"ecom_icl": 1}
        return evidence

    def gate(candidate, baseline, **noise):
        rule = {"kind": "max_drop", "tasks": ["ecom_icl"], "threshold": 0.5,
                "noise": {"last": 3, "k": 0.1, "min_snr": 1.5, **noise}}
        return run_gate(parse_policy({"rules": [rule], "allow": ["unpaired"]}), candidate, baseline)

    apart = gate(last_of("a", [0.1, 0.2, 0.40, 0.41, 0.42]), last_of("b", [0.1, 0.2, 0.30, 0.31, 0.29]))
    finals = [0.40, 0.41, 0.42, 0.30, 0.31, 0.29]
    expected = signal([0.41, 0.30]) / relative_std(finals)
    assert apart.passed and apart.checks[0].inputs["snr"] == pytest.approx(expected)
    assert f"SNR {expected:.2f}" in apart.checks[0].reason and ">= min_snr 1.5" in apart.checks[0].reason
    close = [last_of("c", [0.1, 0.2, 0.40, 0.44, 0.36]), last_of("d", [0.1, 0.2, 0.39, 0.43, 0.37])]
    failed = gate(*close)
    assert not failed.passed and "below min_snr 1.5 [fail-closed: noise]" in failed.checks[0].reason
    skipped = gate(*close, below="skip")
    assert skipped.passed and ": not decided: SNR 0.11" in skipped.checks[0].reason
    one_run = evidence_of(tmp_path / "a", select_record(ledger_records(tmp_path / "a"), "init", None, "init"))
    one_run.data_sources, one_run.versions = close[0].data_sources, close[0].versions
    unknown = gate(last_of("e", [0.1, 0.2, 0.40, 0.41, 0.42]), one_run)
    assert not unknown.passed and "signal-to-noise ratio is unknown" in unknown.checks[0].reason
    from ecomharness.errors import UserError as Refused

    with pytest.raises(Refused, match=r"noise\.below: expected one of"):
        parse_policy({"rules": [{"kind": "max_drop", "tasks": ["t"], "threshold": 0.1,
                                 "noise": {"min_snr": 1, "below": "ignore"}}]})
