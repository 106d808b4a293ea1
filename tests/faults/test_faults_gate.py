"""Fault injection: the gate never fails open, and its exit codes mean one thing each.

One test per defect of issue 15 (gate side). Each runs the real ``ecomharness gate``
entry point in-process (``cli.main``), so the exit code is the one CI sees.
"""

from __future__ import annotations

import json
import math

import pytest

from ecomharness.cli import main
from ecomharness.errors import UserError
from ecomharness.evaluation.ledger import append_record
from ecomharness.gate.evidence import Evidence, Measure
from ecomharness.gate.policy import parse_policy
from ecomharness.gate.verdict import run_gate

SOURCE = {"origin": "explicit", "source": "/data/x", "fingerprint": "abc", "documents": 100,
          "documents_hash": "d1", "fewshot_hash": "f1", "max_docs": 1000, "data_seed": 1234}


def results(path, scores, n=100, sources=None, groups=None):
    """An lm-eval results file with ecomharness data sources: ``{task: (value, stderr)}``."""
    payload = {
        "results": {t: {"alias": t, "score,none": v, "score_stderr,none": se} for t, (v, se) in scores.items()},
        "versions": {t: 1.0 for t in scores},
        "n-samples": {t: {"original": 100, "effective": n} for t in scores},
        "group_subtasks": groups or {},
        "ecomharness": {"data_sources": sources or {t: dict(SOURCE) for t in scores}},
    }
    path.write_text(json.dumps(payload))
    return path


def record(name, step, value, status="ok"):
    rec = {"checkpoint": name, "step": step, "status": status, "task_set": "k"}
    if status == "ok":
        rec.update(metrics={"ecom_icl": {"score": {"value": value, "stderr": None}}},
                   task_versions={"ecom_icl": 1.0}, data_sources={"ecom_icl": SOURCE})
    else:
        rec["error"] = "RuntimeError: out of memory"
    return rec


def write_policy(tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


GAIN = "rank_by: {task: ecom_icl}\nrules: [{kind: min_gain, tasks: [ecom_icl], threshold: 0.0}]\n"


def gate(*args):
    return main(["gate", *args])


def ledger_run(tmp_path, *records):
    for rec in records:
        append_record(tmp_path / "run" / "eval" / "ledger.jsonl", rec)
    return str(tmp_path / "run")


# --- High 3: the untrained base is never the candidate ------------------------------------

def test_ledger_with_only_init_fails_closed(tmp_path, capsys):
    run = ledger_run(tmp_path, record("init", 0, 0.3))
    code = gate("--policy", write_policy(tmp_path, GAIN), "--ledger", run, "--json", str(tmp_path / "v.json"))
    assert code == 1
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert not verdict["passed"] and "no_candidate" in verdict["checks"][0]["reason"]


def test_best_never_picks_init_on_a_tie(tmp_path):
    run = ledger_run(tmp_path, record("init", 0, 0.5), record("checkpoint-10", 10, 0.5), record("checkpoint-20", 20, 0.4))
    from ecomharness.gate.evidence import load_evidence

    assert load_evidence(run, "best", ("ecom_icl", "score")).checkpoint == "checkpoint-10"
    assert load_evidence(run, "init").checkpoint == "init"  # by name it still can be


# --- High 4: exit codes --------------------------------------------------------------------

def test_a_crash_exits_3_not_1(tmp_path, monkeypatch, capsys):
    import ecomharness.gate.verdict as verdict_module

    monkeypatch.setenv("ECOMHARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(verdict_module, "run_gate", lambda *a: (_ for _ in ()).throw(KeyError("boom")))
    base = results(tmp_path / "b.json", {"ecom_icl": (0.3, 0.01)})
    code = gate("--policy", write_policy(tmp_path, GAIN), "--candidate", str(base), "--baseline", str(base))
    err = capsys.readouterr().err
    assert code == 3 and "internal error: KeyError" in err and "full traceback:" in err
    assert list((tmp_path / "cache" / "crashes").glob("crash-*.txt"))


def test_outputs_in_missing_directories_are_written_and_unwritable_ones_exit_2(tmp_path, monkeypatch):
    base = results(tmp_path / "b.json", {"ecom_icl": (0.3, 0.01)})
    out = tmp_path / "new" / "deeper"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(out / "summary.md"))
    code = gate("--policy", write_policy(tmp_path, GAIN), "--candidate", str(base), "--baseline", str(base),
                "--junit", str(out / "g.xml"), "--markdown", str(out / "g.md"), "--json", str(out / "g.json"))
    assert code == 0
    assert all((out / name).is_file() for name in ("g.xml", "g.md", "g.json", "summary.md"))
    (tmp_path / "afile").write_text("x")
    code = gate("--policy", write_policy(tmp_path, GAIN), "--candidate", str(base), "--baseline", str(base),
                "--junit", str(tmp_path / "afile" / "g.xml"))
    assert code == 2


# --- Medium 5: non-finite values and loose policy values ------------------------------------

def _evidence(label, value, stderr):
    return Evidence(label, {"a": {"score": Measure(value, stderr)}}, {"a": 1.0}, {"a": dict(SOURCE)})


def test_nan_stderr_is_no_significant_gain():
    # The unpaired z-test is allowed here (no per-document scores): a NaN stderr must
    # not read as a test result.
    policy = parse_policy({"rules": [{"kind": "min_gain", "tasks": ["a"], "threshold": 0.0, "significant": True}],
                           "allow": ["unpaired"]})
    verdict = run_gate(policy, _evidence("c", 0.6, math.nan), _evidence("b", 0.5, 0.01))
    assert not verdict.passed and "not finite" in verdict.checks[0].reason


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_scores_fail_closed(value):
    drop = parse_policy({"rules": [{"kind": "max_drop", "tasks": ["a"], "threshold": 0.02}]})
    floor = parse_policy({"rules": [{"kind": "min", "tasks": ["a"], "threshold": 0.1}]})
    for policy in (drop, floor):
        verdict = run_gate(policy, _evidence("c", value, 0.01), _evidence("b", 0.5, 0.01))
        assert not verdict.passed and "[fail-closed: nan]" in verdict.checks[0].reason


def test_an_allowed_nan_is_not_compared():
    policy = parse_policy({"rules": [{"kind": "min_gain", "tasks": ["a"], "threshold": 0.0, "allow": ["nan"]}]})
    verdict = run_gate(policy, _evidence("c", math.nan, 0.01), _evidence("b", 0.5, 0.01))
    assert verdict.checks[0].reason.startswith("allowed: nan")


@pytest.mark.parametrize("rule, message", [
    ({"kind": "max_drop", "threshold": float("nan")}, "expected a finite number"),
    ({"kind": "min", "threshold": "nan%"}, "expected a finite number"),
    ({"kind": "max_drop", "threshold": -0.1}, "allowed drop cannot be negative"),
    ({"kind": "min_gain", "threshold": 0, "significant": "no"}, "significant: expected true or false"),
    ({"kind": "min", "threshold": 0, "alpha": True}, "alpha: expected a number between 0 and 1"),
    ({"kind": "min", "threshold": 0, "metric": 5}, "metric: expected a non-empty text"),
    ({"kind": "min", "threshold": 0, "allow": 3}, "allow: expected a reason"),
])
def test_policy_values_are_validated_with_their_field(rule, message):
    with pytest.raises(UserError, match=message):
        parse_policy({"rules": [{"tasks": ["a"], **rule}]})


def test_a_glob_that_matches_nothing_fails_as_missing():
    policy = parse_policy({"rules": [{"kind": "max_drop", "tasks": ["general_*"], "threshold": 0.02}]})
    verdict = run_gate(policy, _evidence("c", 0.5, 0.01), _evidence("b", 0.5, 0.01))
    assert not verdict.passed and "[fail-closed: missing]" in verdict.checks[0].reason


# --- Medium 6: evidence identity -------------------------------------------------------------

def test_limit_10_against_a_full_baseline_is_a_data_mismatch(tmp_path, capsys):
    base = results(tmp_path / "b.json", {"ecom_icl": (0.3, 0.01)})
    cand = results(tmp_path / "c.json", {"ecom_icl": (0.9, 0.01)}, n=10)
    assert gate("--policy", write_policy(tmp_path, GAIN), "--candidate", str(cand), "--baseline", str(base)) == 1
    assert "evaluated is 10 in the candidate" in capsys.readouterr().out


@pytest.mark.parametrize("field, value", [("max_docs", 50), ("data_seed", 7), ("fewshot_hash", "f2"),
                                          ("documents_hash", "d2")])
def test_cap_seed_fewshot_and_documents_are_part_of_the_identity(tmp_path, field, value):
    policy = parse_policy({"rules": [{"kind": "max_drop", "tasks": ["a"], "threshold": 0.02}]})
    cand = _evidence("c", 0.5, 0.01)
    cand.data_sources["a"][field] = value
    verdict = run_gate(policy, cand, _evidence("b", 0.5, 0.01))
    assert not verdict.passed and f"{field} is {value!r} in the candidate" in verdict.checks[0].reason


def test_a_group_with_different_members_is_not_compared():
    policy = parse_policy({"rules": [{"kind": "max_drop", "tasks": ["g"], "threshold": 0.02}]})

    def side(label, members):
        metrics = {"g": {"score": Measure(0.5, 0.01)}, **{m: {"score": Measure(0.5, 0.01)} for m in members}}
        return Evidence(label, metrics, {m: 1.0 for m in members}, {m: dict(SOURCE) for m in members},
                        group_subtasks={"g": members})

    verdict = run_gate(policy, side("c", ["a", "b"]), side("b", ["a", "c"]))
    assert not verdict.passed and "group g has different members" in verdict.checks[0].reason


# --- Medium 7 (gate side): a failed last evaluation ----------------------------------------

def test_last_fails_closed_when_the_last_evaluation_failed(tmp_path, capsys):
    run = ledger_run(tmp_path, record("init", 0, 0.3), record("checkpoint-10", 10, 0.5),
                     record("checkpoint-20", 20, None, status="failed"))
    assert gate("--policy", write_policy(tmp_path, GAIN), "--ledger", run, "--checkpoint", "last") == 1
    out = capsys.readouterr().out
    assert "failed_evaluation" in out and "checkpoint-20" in out


# --- Medium 8: malformed inputs are named errors ---------------------------------------------

@pytest.mark.parametrize("line, message", [
    (b'{"step": 3, "status": "ok", "metrics": {}}\n', "'checkpoint' must be a checkpoint name"),
    (b'{"checkpoint": "checkpoint-3", "step": 3, "status": "ok", "metrics": {"t": {"score": {"value": null}}}}\n',
     "metrics.t.score.value: expected a number"),
    (b'{"checkpoint": "checkpoint-3", "step": 3, "status": "ok", "metrics": {"t": "\xff"}}\n', "not UTF-8"),
])
def test_malformed_ledger_lines_are_named(tmp_path, capsys, line, message):
    run = ledger_run(tmp_path, record("init", 0, 0.3))
    with (tmp_path / "run" / "eval" / "ledger.jsonl").open("ab") as fh:
        fh.write(line)
    assert gate("--policy", write_policy(tmp_path, GAIN), "--ledger", run) == 2
    err = capsys.readouterr().err
    assert "ledger.jsonl:2" in err and message in err


@pytest.mark.parametrize("payload, message", [
    ({"results": []}, "results: expected a mapping"),
    ({"results": {"t": 5}}, "results.t: expected a mapping"),
    ({"results": {"t": {"score,none": 1}}, "group_subtasks": {"g": "t"}}, "group_subtasks.g: expected a list"),
])
def test_malformed_results_files_are_named(tmp_path, capsys, payload, message):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(payload))
    assert gate("--policy", write_policy(tmp_path, GAIN), "--candidate", str(path)) == 2
    assert message in capsys.readouterr().err


def test_a_non_utf8_policy_is_a_named_error(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_bytes(b"rules: [{kind: min, tasks: [a], threshold: 0.1, name: \xff}]\n")
    base = results(tmp_path / "b.json", {"a": (0.3, 0.01)})
    assert gate("--policy", str(policy), "--candidate", str(base)) == 2
    assert "p.yaml:1: not UTF-8" in capsys.readouterr().err


# --- Low: --ledger never falls back to a results file --------------------------------------

def test_ledger_flag_without_a_ledger_is_an_error(tmp_path, capsys):
    (tmp_path / "run" / "sub").mkdir(parents=True)
    results(tmp_path / "run" / "sub" / "results_2026.json", {"ecom_icl": (0.9, 0.01)})
    assert gate("--policy", write_policy(tmp_path, GAIN), "--ledger", str(tmp_path / "run")) == 2
    assert "no ledger at" in capsys.readouterr().err
