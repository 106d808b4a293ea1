"""Reports over a ledger: the table, the curves, the failures section, and --compare."""

from __future__ import annotations

import pytest

from ecomharness.errors import UserError
from ecomharness.evaluation.ledger import append_record, read_ledger
from ecomharness.report.curves import compare_runs, markdown_table, series, write_report
from tests.conftest import run_cli

SOURCE = {"origin": "bundled", "source": "s", "fingerprint": "f"}


def _record(name, step, ecom, general, status="ok"):
    record = {"checkpoint": name, "step": step, "status": status, "task_set": "k", "tokens_seen": step * 10}
    if status == "ok":
        record.update(metrics={"ecom_icl": {"score": {"value": ecom, "stderr": 0.01}},
                               "general_icl": {"score": {"value": general, "stderr": None}}},
                      groups=["ecom_icl", "general_icl"], task_versions={"ecom_icl": 1.0, "general_icl": 1.0},
                      data_sources={"ecom_icl": SOURCE, "general_icl": SOURCE})
    else:
        record["error"] = "RuntimeError: boom"
    return record


def _run(root, *records):
    for record in records:
        append_record(root / "eval" / "ledger.jsonl", record)
    return root


def test_table_series_and_report_files(tmp_path):
    run = _run(tmp_path / "run", _record("init", 0, 0.30, 0.50), _record("checkpoint-10", 10, 0.40, 0.49),
               _record("checkpoint-20", 20, 0.0, 0.0, status="failed"))
    records = [r for r in read_ledger(run / "eval" / "ledger.jsonl") if r["status"] == "ok"]
    assert series(records)["ecom_icl"] == [(0, 0.30, 0.01), (10, 0.40, 0.01)]
    table = markdown_table(records)
    assert "| checkpoint-10 | 10 | 100 | 0.4000 ± 0.0100 | 0.4900 |" in table
    paths = write_report(run)
    assert paths["curves"].stat().st_size > 1000
    text = paths["report"].read_text()
    assert "## Failed evaluations" in text and "checkpoint-20: RuntimeError: boom" in text
    with pytest.raises(UserError, match="no task reports the metric 'acc'"):
        write_report(run, metric="acc")


def test_flat_and_named_tasks_are_drawn_apart_with_their_reason(tmp_path):
    """A task that kept one value at every checkpoint (a model too small to move it) and
    a task the caller names get no panel: report.md lists each with its reason and the
    table keeps their columns."""
    from ecomharness.report.curves import apart_reasons, flat_series

    run = _run(tmp_path / "run", _record("init", 0, 0.30, 0.0), _record("checkpoint-10", 10, 0.40, 0.0),
               _record("checkpoint-20", 20, 0.45, 0.0))
    records = [r for r in read_ledger(run / "eval" / "ledger.jsonl")]
    data = series(records)
    assert flat_series(data) == {"general_icl": 0.0}
    assert apart_reasons(data, {"ecom_icl": "named", "absent": "x"}) == {
        "ecom_icl": "named", "general_icl": "0.0000 at every checkpoint"}
    text = write_report(run)["report"].read_text()
    assert "- general_icl: 0.0000 at every checkpoint" in text and "| 0.4500 ± 0.0100 | 0.0000 |" in text
    text = write_report(run, apart={"ecom_icl": "a reason of the caller's"})["report"].read_text()
    assert "- ecom_icl: a reason of the caller's" in text


def test_compare_gates_each_run_against_its_own_init(tmp_path):
    good = _run(tmp_path / "good", _record("init", 0, 0.30, 0.50), _record("checkpoint-10", 10, 0.40, 0.495))
    bad = _run(tmp_path / "bad", _record("init", 0, 0.30, 0.50), _record("checkpoint-10", 10, 0.40, 0.30))
    table = compare_runs([good, bad])
    assert "| good | checkpoint-10 | 0.4000 ± 0.0100 | 0.4950 | pass |" in table
    assert "| bad | checkpoint-10 |" in table and "FAIL (general_icl score 0.5000 -> 0.3000" in table
    result = run_cli("report", "--compare", str(good), str(bad))
    assert result.returncode == 0 and "| good |" in result.stdout


def test_a_run_without_evaluations_is_a_named_error(tmp_path):
    (tmp_path / "empty" / "eval").mkdir(parents=True)
    with pytest.raises(UserError, match="no successful evaluation recorded yet"):
        write_report(tmp_path / "empty")


def test_report_and_compare_show_test_documents_in_the_training_data(tmp_path):
    held = {"ecom_icl": {"found": 2, "documents": 40, "share": 0.05, "action": "flag", "sources": ["crawl"]},
            "general_icl": {"found": 0, "documents": 30, "share": 0.0, "action": "flag", "sources": ["crawl"]}}
    last = {**_record("checkpoint-10", 10, 0.40, 0.495), "contamination": held}
    run = _run(tmp_path / "run", _record("init", 0, 0.30, 0.50), last)
    text = write_report(run)["report"].read_text()
    assert "## Test documents in the training data" in text
    assert "| ecom_icl | 2 | 40 | 0.0500 | flag | crawl |" in text
    table = compare_runs([run])
    assert "| ecom_icl 2/40 |" in table and "[fail-closed: contaminated]" in table
    clean = _run(tmp_path / "clean", _record("init", 0, 0.30, 0.50), _record("checkpoint-10", 10, 0.40, 0.495))
    assert "| not checked |" in compare_runs([clean])
    assert "Test documents in the training data" not in write_report(clean)["report"].read_text()
