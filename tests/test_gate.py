"""The checkpoint gate: every rule kind, significance by hand, every fail-closed reason."""

from __future__ import annotations

import json
import math
from xml.etree import ElementTree

import pytest

from ecomharness.errors import UserError
from ecomharness.gate.evidence import Evidence, Measure, from_results, load_evidence
from ecomharness.gate.policy import parse_policy
from ecomharness.gate.significance import z_test
from ecomharness.gate.verdict import run_gate, to_junit, to_markdown
from tests.conftest import REPO, run_cli

SOURCE = {"origin": "explicit", "source": "/data/x", "fingerprint": "abc"}


def evidence(label="cand", **scores) -> Evidence:
    """``score=(value, stderr)`` per task."""
    return Evidence(
        label=label,
        metrics={task: {"score": Measure(v, se)} for task, (v, se) in scores.items()},
        versions={task: 1.0 for task in scores},
        data_sources={task: dict(SOURCE) for task in scores},
    )


def gate(rules, candidate, baseline=None, **top):
    return run_gate(parse_policy({"rules": rules, **top}), candidate, baseline)


def unpaired_gate(rules, candidate, baseline=None, **top):
    """The unpaired z-test decides: these Evidence objects carry no per-document scores,
    and the policy allows ``unpaired``."""
    return gate(rules, candidate, baseline, allow=["unpaired"], **top)


def test_z_test_by_hand():
    # diff 0.05, se = sqrt(0.03^2 + 0.04^2) = 0.05 -> z = 1, p = 2 * (1 - Phi(1)) = 0.3173
    z, p = z_test(Measure(0.55, 0.03), Measure(0.50, 0.04))
    assert z == pytest.approx(1.0) and p == pytest.approx(0.317311, abs=1e-6)
    assert z_test(Measure(0.5, None), Measure(0.5, 0.1)) is None
    assert z_test(Measure(0.6, 0.0), Measure(0.5, 0.0))[1] == 0.0


def test_min_floor():
    v = gate([{"kind": "min", "tasks": ["a", "b"], "threshold": 0.5}], evidence(a=(0.5, 0.1), b=(0.49, 0.1)))
    assert [c.passed for c in v.checks] == [True, False] and not v.passed
    assert "0.4900 < floor 0.5" in v.checks[1].reason


def test_max_drop_absolute_and_relative():
    base = evidence("base", g=(0.60, None))
    assert gate([{"kind": "max_drop", "tasks": ["g"], "threshold": 0.05}], evidence(g=(0.56, None)), base).passed
    assert not gate([{"kind": "max_drop", "tasks": ["g"], "threshold": 0.05}], evidence(g=(0.54, None)), base).passed
    # 10% of 0.60 = 0.06
    assert gate([{"kind": "max_drop", "tasks": ["g"], "threshold": "10%"}], evidence(g=(0.541, None)), base).passed
    assert not gate([{"kind": "max_drop", "tasks": ["g"], "threshold": "10%"}], evidence(g=(0.539, None)), base).passed


def test_max_drop_fails_only_when_significant():
    rule = [{"kind": "max_drop", "tasks": ["g"], "threshold": 0.01, "alpha": 0.05}]
    base = evidence("base", g=(0.60, 0.03))
    # drop 0.05, se = sqrt(2) * 0.03 = 0.0424 -> z = -1.1785, p = 0.2386: not significant
    v = unpaired_gate(rule, evidence(g=(0.55, 0.03)), base)
    assert v.passed and "not significant (p=0.239" in v.checks[0].reason
    # drop 0.10 -> z = -2.357, p = 0.0184: significant
    v = unpaired_gate(rule, evidence(g=(0.50, 0.03)), base)
    assert not v.passed and "significant (p=0.0184" in v.checks[0].reason
    assert v.checks[0].inputs["p"] == pytest.approx(math.erfc(0.10 / (math.sqrt(2) * 0.03) / math.sqrt(2)))
    # exactly at alpha: p = 0.05 is not below alpha, so it passes
    se = 0.10 / 1.959963984540054 / math.sqrt(2)
    assert unpaired_gate(rule, evidence(g=(0.50, se)), evidence("base", g=(0.60, se))).passed
    # no stderr: the threshold alone decides, and the reason says so
    v = unpaired_gate(rule, evidence(g=(0.55, None)), evidence("base", g=(0.60, None)))
    assert not v.passed and "without a significance test" in v.checks[0].reason


def test_min_gain_and_significant_gain():
    base = evidence("base", d=(0.40, 0.02))
    assert gate([{"kind": "min_gain", "tasks": ["d"], "threshold": 0.05}], evidence(d=(0.46, 0.02)), base).passed
    assert not gate([{"kind": "min_gain", "tasks": ["d"], "threshold": 0.05}], evidence(d=(0.44, 0.02)), base).passed
    rule = [{"kind": "min_gain", "tasks": ["d"], "threshold": 0.0, "significant": True}]
    # gain 0.03, se 0.0283 -> p = 0.289
    v = unpaired_gate(rule, evidence(d=(0.43, 0.02)), base)
    assert not v.passed and "not significant" in v.checks[0].reason
    assert unpaired_gate(rule, evidence(d=(0.50, 0.02)), base).passed  # p = 0.0004
    v = unpaired_gate(rule, evidence(d=(0.50, None)), evidence("base", d=(0.40, None)))
    assert not v.passed and "stderr is missing" in v.checks[0].reason


def test_joint_rule_and_globs():
    rules = [{"kind": "joint", "name": "forgetting", "parts": [
        {"kind": "min_gain", "tasks": ["ecom_*"], "threshold": 0.01},
        {"kind": "max_drop", "tasks": ["general"], "threshold": 0.02}]}]
    base = evidence("base", ecom_a=(0.3, None), ecom_b=(0.3, None), general=(0.5, None))
    ok = gate(rules, evidence(ecom_a=(0.35, None), ecom_b=(0.32, None), general=(0.49, None)), base)
    assert ok.passed and len(ok.checks) == 1 and ok.checks[0].task == "ecom_a & ecom_b & general"
    bad = gate(rules, evidence(ecom_a=(0.35, None), ecom_b=(0.32, None), general=(0.45, None)), base)
    assert not bad.passed and "failing: general" in bad.checks[0].reason


@pytest.mark.parametrize("reason", ["missing", "nan", "data_mismatch", "unknown_source", "version_mismatch"])
def test_every_fail_closed_reason_and_its_allowance(reason):
    base = evidence("base", g=(0.5, 0.01))
    cand = evidence(g=(0.5, 0.01))
    if reason == "missing":
        cand = evidence(other=(0.5, 0.01))
    elif reason == "nan":
        cand.metrics["g"]["score"] = Measure(float("nan"), None)
    elif reason == "data_mismatch":
        cand.data_sources["g"] = {**SOURCE, "fingerprint": "zzz"}
    elif reason == "unknown_source":
        cand.data_sources = {}
    else:
        cand.versions["g"] = 2.0
    rule = {"kind": "max_drop", "tasks": ["g"], "threshold": 0.1}
    v = gate([rule], cand, base)
    assert not v.passed and f"[fail-closed: {reason}]" in v.checks[0].reason
    allowed = gate([{**rule, "allow": [reason]}], cand, base)
    assert f"fail-closed: {reason}" not in allowed.checks[0].reason
    assert gate([rule], cand, base, allow=[reason]).checks[0].reason == allowed.checks[0].reason


def test_empty_results_and_missing_baseline_fail():
    assert not gate([{"kind": "min", "tasks": ["a"], "threshold": 0}], Evidence("c", {})).passed
    v = gate([{"kind": "min_gain", "tasks": ["a"], "threshold": 0}], evidence(a=(0.5, None)))
    assert not v.passed and "none was given" in v.checks[0].reason


def test_policy_validation():
    with pytest.raises(UserError, match=r"rules\[0\]: unknown key 'treshold' \(did you mean 'threshold'\?\)"):
        parse_policy({"rules": [{"kind": "min", "tasks": ["a"], "treshold": 1}]})
    with pytest.raises(UserError, match="'min_gian' is not a rule kind \\(did you mean 'min_gain'"):
        parse_policy({"rules": [{"kind": "min_gian", "tasks": ["a"], "threshold": 1}]})
    with pytest.raises(UserError, match="allow: 'everything'"):
        parse_policy({"rules": [{"kind": "min", "tasks": ["a"], "threshold": 1}], "allow": ["everything"]})
    with pytest.raises(UserError, match="threshold: expected a finite number"):
        parse_policy({"rules": [{"kind": "min", "tasks": ["a"], "threshold": "lots"}]})
    with pytest.raises(UserError, match="unknown key 'rule'"):
        parse_policy({"rule": []})


def test_junit_xml_has_the_shape_ci_systems_read():
    v = gate([{"kind": "min", "tasks": ["a", "b"], "threshold": 0.5}], evidence(a=(0.9, None), b=(0.1, None)))
    root = ElementTree.fromstring(to_junit(v).split("?>", 1)[1])
    assert root.tag == "testsuite" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == ["a/score", "b/score"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and "floor 0.5" in failure.get("message")
    assert "| **FAIL** | min | b | score |" in to_markdown(v)


def _results_file(path, scores, fingerprint="abc"):
    results = {
        "results": {t: {"alias": t, "score,none": v, "score_stderr,none": se} for t, (v, se) in scores.items()},
        "versions": {t: 1.0 for t in scores},
        "ecomharness": {"data_sources": {t: {**SOURCE, "fingerprint": fingerprint} for t in scores}},
    }
    path.write_text(json.dumps(results))
    return path


def test_cli_exit_codes_and_outputs(tmp_path):
    base = _results_file(tmp_path / "base.json", {"ecom_icl": (0.30, 0.02), "general_icl": (0.50, 0.02)})
    good = _results_file(tmp_path / "good.json", {"ecom_icl": (0.40, 0.02), "general_icl": (0.495, 0.02)})
    bad = _results_file(tmp_path / "bad.json", {"ecom_icl": (0.40, 0.02), "general_icl": (0.30, 0.02)})
    policy = str(REPO / "train" / "gates" / "default.yaml")
    out = run_cli("gate", "--policy", policy, "--candidate", str(good), "--baseline", str(base),
                  "--junit", str(tmp_path / "g.xml"), "--json", str(tmp_path / "g.json"),
                  "--markdown", str(tmp_path / "g.md"), env={"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    assert out.returncode == 0, out.stdout + out.stderr
    verdict = json.loads((tmp_path / "g.json").read_text())
    assert verdict["passed"] and len(verdict["checks"]) == 4
    # Results without held-out bits per byte pass the forgetting rule as allowed-missing, saying so.
    bpb = [c for c in verdict["checks"] if c["metric"] == "bits_per_byte"]
    assert len(bpb) == 2 and all(c["passed"] and c["reason"] == "allowed: missing (not compared)" for c in bpb)
    assert "Checkpoint gate: PASSED" in (tmp_path / "summary.md").read_text()
    assert run_cli("gate", "--policy", policy, "--candidate", str(bad), "--baseline", str(base)).returncode == 1
    usage = run_cli("gate", "--policy", policy, "--candidate", str(tmp_path / "nope.json"))
    assert usage.returncode == 2 and "no such file" in usage.stderr
    bad_policy = tmp_path / "p.yaml"
    bad_policy.write_text("rules: [{kind: min, tasks: [a], threshold: 1, extra: 2}]\n")
    assert run_cli("gate", "--policy", str(bad_policy), "--candidate", str(good)).returncode == 2


def test_ledger_inputs_and_best_passing(tmp_path):
    from ecomharness.evaluation.ledger import append_record

    ledger = tmp_path / "run" / "eval" / "ledger.jsonl"
    def record(name, step, ecom, general):
        return {"checkpoint": name, "step": step, "status": "ok", "task_set": "k",
                "metrics": {"ecom_icl": {"score": {"value": ecom, "stderr": None}},
                            "general_icl": {"score": {"value": general, "stderr": None}}},
                "task_versions": {"ecom_icl": 1.0, "general_icl": 1.0},
                "data_sources": {"ecom_icl": SOURCE, "general_icl": SOURCE}}
    for rec in (record("init", 0, 0.30, 0.50), record("checkpoint-10", 10, 0.35, 0.49),
                record("checkpoint-20", 20, 0.45, 0.40), record("checkpoint-30", 30, 0.40, 0.495)):
        append_record(ledger, rec)
    policy = str(REPO / "train" / "gates" / "default.yaml")
    last = run_cli("gate", "--policy", policy, "--ledger", str(tmp_path / "run"), "--checkpoint", "last", "--quiet")
    assert last.returncode == 0
    best = run_cli("gate", "--policy", policy, "--ledger", str(tmp_path / "run"), "--checkpoint", "best-passing")
    assert best.returncode == 0
    assert "checkpoint-20 fail" in best.stdout and "best passing checkpoint: checkpoint-30" in best.stdout
    assert load_evidence(tmp_path / "run", "best", ("ecom_icl", "score")).checkpoint == "checkpoint-20"
    assert load_evidence(tmp_path / "run", "10").checkpoint == "checkpoint-10"
    with pytest.raises(UserError, match="no checkpoint 'checkpoint-99'"):
        load_evidence(tmp_path / "run", "checkpoint-99")


def test_real_ecomharness_results_gate_against_themselves(tmp_path):
    out = tmp_path / "out"
    result = run_cli("eval", "--model", "ecom-oracle", "--tasks", "ecom_icl,general_icl", "--output_path", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    path = next(out.rglob("results_*.json"))
    cand = from_results(json.loads(path.read_text()), "x")
    assert cand.leaves("ecom_icl") and all(leaf in cand.data_sources for leaf in cand.leaves("ecom_icl"))
    gated = run_cli("gate", "--policy", str(REPO / "train" / "gates" / "forgetting.yaml"), "--candidate", str(path),
                    "--baseline", str(path))
    # identical runs: no gain, so the joint rule's min_gain of 0.01 fails; floors pass
    assert gated.returncode == 1 and "gain +0.0000 is below the required +0.0100" in gated.stdout


def test_plugins_add_rule_kinds():
    from ecomharness import hookimpl
    from ecomharness.gate.policy import parse_policy as parse
    from ecomharness.gate.rules import Check
    from ecomharness.plugins import get_plugin_manager
    from ecomharness.registry import gate_rules

    def ratio_rule(rule, gate):
        c = gate.candidate.metrics["a"]["score"].value
        b = gate.baseline.metrics["a"]["score"].value
        return [Check(rule.name, rule.kind, "a", "score", c / b >= rule.options["at_least"], f"ratio {c / b:.2f}")]

    class Plugin:
        @hookimpl
        def ecomharness_gate_rules(self):
            return {"ratio": ratio_rule}

    get_plugin_manager().register(Plugin(), name="test_gate_plugin")
    policy = parse({"rules": [{"kind": "ratio", "at_least": 1.1}]}, known_kinds=set(gate_rules.names()))
    verdict = run_gate(policy, evidence(a=(0.6, None)), evidence("b", a=(0.5, None)))
    assert verdict.passed and verdict.checks[0].reason == "ratio 1.20"


def test_lower_is_better_metrics_turn_drops_and_floors_around():
    base = evidence("base", bpb=(1.50, None))
    rule = {"kind": "max_drop", "tasks": ["bpb"], "threshold": 0.05, "direction": "lower"}
    assert gate([rule], evidence(bpb=(1.40, None)), base).passed  # bpb fell: better
    assert gate([rule], evidence(bpb=(1.54, None)), base).passed  # rose by 0.04: within
    worse = gate([rule], evidence(bpb=(1.60, None)), base)
    assert not worse.passed and "drop +0.1000 exceeds the allowed 0.0500" in worse.checks[0].reason
    assert "lower is better" in worse.checks[0].reason
    ceiling = {"kind": "min", "tasks": ["bpb"], "threshold": 1.55, "direction": "lower"}
    assert gate([ceiling], evidence(bpb=(1.50, None))).passed
    assert not gate([ceiling], evidence(bpb=(1.56, None))).passed
    with pytest.raises(UserError, match="direction: expected higher or lower"):
        parse_policy({"rules": [{**rule, "direction": "down"}]})


def test_a_contaminated_task_fails_closed_and_passes_only_when_allowed_saying_so():
    """The candidate's training data held 3 of 40 test documents of `a` (flagged, kept):
    every rule on `a` fails closed with `contaminated`, naming the share and the sources;
    allowed (by the rule, the policy, or a max_contamination above the share), the check
    is decided as usual and its reason says what was allowed."""
    candidate = evidence(a=(0.70, 0.01), b=(0.60, 0.01))
    candidate.contamination = {"a": {"found": 3, "documents": 40, "share": 0.075, "action": "flag",
                                     "sources": ["crawl"]}}
    base = evidence("base", a=(0.60, 0.01), b=(0.60, 0.01))
    rules = [{"kind": "min", "tasks": ["a", "b"], "threshold": 0.5},
             {"kind": "max_drop", "tasks": ["a"], "threshold": 0.05}]
    verdict = unpaired_gate(rules, candidate, base)
    failed = [c for c in verdict.checks if not c.passed]
    assert not verdict.passed and {c.task for c in failed} == {"a"} and len(failed) == 2
    assert all("[fail-closed: contaminated]" in c.reason and "3 of 40 test documents (7.5%)" in c.reason
               and "sources: crawl" in c.reason for c in failed)
    for top in ({"allow": ["unpaired", "contaminated"]}, {"max_contamination": 0.1}):
        allowed = gate(rules, candidate, base, **({"allow": ["unpaired"]} | top))
        assert allowed.passed, [c.reason for c in allowed.checks]
        notes = [c for c in allowed.checks if c.task == "a"]
        assert all(("contamination allowed: a: 3 of 40" in c.reason) == ("allow" in top) for c in notes)
    by_rule = unpaired_gate([{**rules[1], "allow": ["contaminated"]}], candidate, base)
    assert by_rule.passed and "contamination allowed" in by_rule.checks[0].reason
    # Dropped by the build: nothing of it is in the training data, nothing to fail on.
    candidate.contamination["a"]["share"] = 0.0
    assert unpaired_gate(rules, candidate, base).passed
    with pytest.raises(UserError, match=r"max_contamination: expected a share"):
        parse_policy({"rules": rules, "max_contamination": 2})
