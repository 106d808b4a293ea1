"""The plugin core: discovery through entry points, selection, tracing, the contract."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ecomharness import hookspecs
from ecomharness.plugins import PluginError, get_plugin_manager, list_plugins, plugin_results
from tests.conftest import REPO, run_cli

HOOK_NAMES = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("ecomharness_")
)


def test_builtin_plugin_is_found_through_the_entry_point_group():
    names = {info.name: info for info in list_plugins()}
    assert "ecom_tasks" in names
    info = names["ecom_tasks"]
    assert info.distribution == "ecomharness"
    assert info.module == "ecomharness.builtin.task_dirs"
    assert "ecomharness_task_dirs" in info.hooks


def test_task_dirs_hook_returns_the_bundled_tasks_folder():
    dirs = dict(plugin_results("ecomharness_task_dirs"))
    assert Path(dirs["ecom_tasks"][0]).resolve() == (REPO / "tasks").resolve()


def test_env_var_restricts_loaded_plugins(monkeypatch):
    monkeypatch.setenv("ECOMHARNESS_PLUGINS", "ecom_tasks")
    assert [p.name for p in list_plugins()] == ["ecom_tasks"]


def test_env_var_naming_a_missing_plugin_fails_clearly(monkeypatch):
    monkeypatch.setenv("ECOMHARNESS_PLUGINS", "ecom_tasks,no_such_plugin")
    with pytest.raises(PluginError, match="no_such_plugin"):
        get_plugin_manager()


def test_trace_env_var_prints_hook_calls(monkeypatch, capsys):
    from ecomharness.tasks.index import plugin_task_dirs

    monkeypatch.setenv("ECOMHARNESS_TRACE_HOOKS", "1")
    plugin_task_dirs()  # the real path: plugin_results calls each implementation itself
    assert "[ecomharness hooks] ecomharness_task_dirs -> ecom_tasks: list of 1" in capsys.readouterr().err


def test_broken_plugin_module_is_reported_with_its_name(monkeypatch):
    from importlib import metadata

    from ecomharness import plugins

    broken = metadata.EntryPoint(name="broken", value="no_such_module_xyz", group="ecomharness")
    monkeypatch.setattr(plugins, "_entry_points", lambda: [broken])
    with pytest.raises(PluginError, match="plugin 'broken'.*failed to load"):
        get_plugin_manager()


def test_a_plugin_returning_a_missing_directory_is_named(monkeypatch, tmp_path):
    from ecomharness import hookimpl
    from ecomharness.tasks import index as tasks

    class Bad:
        @hookimpl
        def ecomharness_task_dirs(self):
            return [tmp_path / "missing"]

    get_plugin_manager().register(Bad(), name="bad_dirs")
    with pytest.raises(PluginError, match="bad_dirs.*does not exist"):
        tasks.plugin_task_dirs()


def test_metric_modules_hook_imports_modules_before_evaluation(monkeypatch, tmp_path):
    import sys

    from ecomharness import hookimpl
    from ecomharness.tasks import index as tasks

    module = tmp_path / "my_metric_mod_for_test.py"
    module.write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Metrics:
        @hookimpl
        def ecomharness_metric_modules(self):
            return ["my_metric_mod_for_test"]

    get_plugin_manager().register(Metrics(), name="metrics_test")
    assert "my_metric_mod_for_test" in tasks.import_metric_modules()
    assert sys.modules["my_metric_mod_for_test"].IMPORTED


def test_record_formats_hook_is_collected(monkeypatch):
    from ecomharness import hookimpl

    class Formats:
        @hookimpl
        def ecomharness_record_formats(self):
            return {"my_format": "json:loads"}

    get_plugin_manager().register(Formats(), name="formats_test")
    assert ("formats_test", {"my_format": "json:loads"}) in plugin_results(
        "ecomharness_record_formats"
    )


def test_every_hook_has_a_docstring_and_is_documented():
    doc = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    for name in HOOK_NAMES:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40, f"{name} needs a docstring"
        assert f"`{name}`" in doc, f"{name} is missing from docs/plugins.md"


def test_every_hook_has_a_test():
    text = "".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").glob("test_*.py"))
    for name in HOOK_NAMES:
        # this contract test builds names at run time, so any literal use is another test
        assert re.search(rf"\b{name}\b", text), f"hook {name} has no test"


def test_plugins_command_lists_plugins_and_their_hooks():
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert "ecom_tasks" in result.stdout
    assert "ecomharness_task_dirs" in result.stdout
    result = run_cli("plugins", "--json")
    assert result.returncode == 0
    import json

    payload = json.loads(result.stdout)
    assert any(p["name"] == "ecom_tasks" and p["task_dirs"] for p in payload)


def test_a_plugin_aggregation_gets_paired_tests_and_bootstrap_errors():
    """``ecomharness_aggregations``: a third party's aggregation, with its count form,
    is tested on paired evidence and given a bootstrap stderr like a built-in."""
    import numpy as np

    from ecomharness import hookimpl
    from ecomharness.evaluation.stderr import RESAMPLES, fill_bootstrap_stderr
    from ecomharness.gate.evidence import Evidence, Measure
    from ecomharness.gate.pairing import Unpaired, paired_result
    from ecomharness.metrics.corpus import Aggregation, CountForm
    from ecomharness.registry import aggregations

    def hit_rate(values):
        return CountForm(np.asarray(values, dtype=float).reshape(-1, 2), lambda s: s[:, 0] / np.maximum(s[:, 1], 1))

    class HitRate:
        @hookimpl
        def ecomharness_aggregations(self):
            return {"hit_rate_for_test": Aggregation("hit_rate_for_test", hit_rate)}

    def side(label, values):
        value = sum(v[0] for v in values) / sum(v[1] for v in values)
        table = {"tasks": {"t": {"doc_ids": [f"d{i}" for i in range(len(values))], "filter": "none",
                                 "metrics": {"rate": values}, "aggregation": {"rate": "hit_rate_for_test"}}},
                 "groups": {}}
        return Evidence(label, {"t": {"rate": Measure(value, None)}}, per_document=table), value, table

    base = [[i % 2, 2] for i in range(60)]
    cand = [[(i % 3 > 0) + (i % 2), 2] for i in range(60)]
    (c, c_value, _), (b, b_value, b_table) = side("c", cand), side("b", base)
    aggregations.reset()
    with pytest.raises(Unpaired, match="no paired resampling form"):
        paired_result("t", "rate", c, b)
    get_plugin_manager().register(HitRate(), name="hit_rate_test")
    aggregations.reset()
    try:
        result = paired_result("t", "rate", c, b)
        assert result.test == "paired-bootstrap" and result.n == 60
        assert result.difference == pytest.approx(c_value - b_value)
        results = {"results": {"t": {"rate,none": b_value, "rate_stderr,none": "N/A"}}, "group_subtasks": {}}
        assert fill_bootstrap_stderr(results, b_table)["metrics"] == {"t/rate": RESAMPLES}
        assert 0 < results["results"]["t"]["rate_stderr,none"] < 0.1
    finally:
        aggregations.reset()
