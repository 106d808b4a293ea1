"""Packaging: a non-editable wheel works from any directory, and a third-party plugin
package installs and runs with no change to the core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow


def _pip(*args: str, python: str = sys.executable) -> None:
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", *args],
        check=True,
        capture_output=True,
        text=True,
    )


def test_example_plugin_installs_and_runs_through_eval(tiny_model_dir, tmp_path):
    target = tmp_path / "site"
    _pip("--target", str(target), str(REPO / "plugins" / "ecomharness-example-fin"))
    env = {"PYTHONPATH": str(target), "ECOMHARNESS_CACHE": str(tmp_path / "cache")}

    listing = run_cli("tasks", "--json", env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)["tasks"]
    assert {"name": "example_fin_sentiment", "kind": "task", "plugin": "example_fin"} in rows

    plugins = run_cli("plugins", env=env, cwd=tmp_path)
    assert "example_fin  (ecomharness-example-fin 0.1.0" in plugins.stdout
    assert "ecomharness_metric_modules" in plugins.stdout

    out = tmp_path / "out"
    result = run_cli(
        "eval", "--model", "hf", "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
        "--tasks", "example_fin_sentiment", "--output_path", str(out),
        env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [results_file] = list(out.rglob("results_*.json"))
    metrics = json.loads(results_file.read_text())["results"]["example_fin_sentiment"]
    # the plugin's own metric, registered through the metric-modules hook
    assert 0.0 <= metrics["sentiment_match,none"] <= 1.0


def test_non_editable_wheel_works_from_an_unrelated_directory(tiny_model_dir, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, text=True,
    )
    [wheel] = list(wheels.glob("ecomharness-*.whl"))
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # Dependencies come from the test environment (appended after the new venv's own
    # site-packages), so the fresh wheel, not the editable checkout, is what runs. The
    # editable benchmark plugins found there need their source folders on the path too
    # (their own import hooks are .pth files, which run only in their environment).
    plugin_sources = [str(REPO / "plugins" / name / "src") for name in PLUGINS]
    Path(site, "_deps_from_test_env.pth").write_text(
        "\n".join([sysconfig.get_paths()["purelib"], *plugin_sources]) + "\n")
    _pip(str(wheel), python=python)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "ECOMHARNESS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": ""}
    ecomharness = str(venv / "bin" / "ecomharness")

    def run(*args):
        result = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    where = run(python, "-c", "import ecomharness.resources as r; print(r.bundled_path('tasks'))")
    assert where.strip().startswith(site), "tasks/ must come from the installed wheel"
    assert "ecom_tasks" in run(ecomharness, "plugins")
    assert "ecom_icl_pdc" in run(ecomharness, "tasks")
    # lm-eval PR #4015's entry point value must name a package with the task YAML.
    spec_dir = run(python, "-c",
        "import importlib.util as u; print(u.find_spec('ecomharness._bundled.tasks').submodule_search_locations[0])")
    assert Path(spec_dir.strip(), "ecom_icl", "ecom_icl_pdc.yaml").is_file()

    include = run(ecomharness, "tasks-path").strip()
    # Plain lm-eval 0.4.13 rejects device=... inside --model_args (it also passes its
    # default --device: "multiple values for keyword argument 'device'"), so --device.
    out = run(
        python, "-m", "lm_eval", "--tasks", "ecom_icl_pdc", "--include_path", include,
        "--model", "hf", "--model_args", f"pretrained={tiny_model_dir}", "--device", "cpu",
        "--limit", "2",
    )
    assert "ecom_icl_pdc" in out


PLUGINS = {"ecomharness-ecinstruct": "ecinstruct", "ecomharness-shopping-mmlu": "shopping_mmlu"}


def _bare_venv(tmp_path: Path) -> tuple[str, Path]:
    """A fresh venv that sees this test environment's packages and the checkout's
    source, but none of the plugins under plugins/ (a symlink view of site-packages
    without them), so that installing and uninstalling them there is what a user does."""
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    Path(site, "_test_env.pth").write_text(f"{REPO / 'src'}\n{_env_view(tmp_path)}\n")
    return python, site


def _env_view(tmp_path: Path) -> Path:
    """This environment's site-packages as symlinks, without the plugins of plugins/
    and the editable installs' import hooks (``.pth`` files do not run from a path
    added this way, so an editable install seen through it would be listed but fail
    to import). Enough to list plugins and tasks; evaluating through it is not tested
    (datasets' pickling of pyarrow types fails on symlinked module paths)."""
    view = tmp_path / "env_view"
    if not view.is_dir():
        view.mkdir()
        hidden = ("ecinstruct", "shopping_mmlu", "_editable_impl_ecomharness")
        for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
            if not any(word in entry.name for word in hidden):
                (view / entry.name).symlink_to(entry)
    return view


def _cli(python: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; sys.argv[0] = 'ecomharness'; from ecomharness.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONPATH": "", "ECOMHARNESS_OFFLINE": "1"}
    return subprocess.run([python, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_benchmark_plugins_install_list_and_uninstall_one_without_touching_the_other(tmp_path):
    python, site = _bare_venv(tmp_path)
    assert "ecinstruct" not in _cli(python, "plugins", cwd=tmp_path).stdout
    for package in PLUGINS:
        _pip("--target", str(site), str(REPO / "plugins" / package))
    listing = _cli(python, "plugins", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "ecinstruct  (ecomharness-ecinstruct 0.1.0" in listing.stdout
    assert "shopping_mmlu  (ecomharness-shopping-mmlu 0.1.0" in listing.stdout

    def task_names() -> set[str]:
        result = _cli(python, "tasks", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        return {row["name"] for row in json.loads(result.stdout)["tasks"]}

    before = task_names()
    assert {"ecinstruct_ind", "ecinstruct_ood", "shopping_mmlu", "shopping_mmlu_concept", "ecom_icl"} <= before
    # pip (from this environment, seen through the view) removes what it installed.
    removed = subprocess.run([python, "-m", "pip", "uninstall", "--yes", "ecomharness-shopping-mmlu"],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert removed.returncode == 0, removed.stderr
    after = task_names()
    assert not {name for name in after if name.startswith("shopping_mmlu")}
    assert after == {name for name in before if not name.startswith("shopping_mmlu")}
    assert "shopping_mmlu" not in _cli(python, "plugins", cwd=tmp_path).stdout
    assert "ecinstruct  (ecomharness-ecinstruct 0.1.0" in _cli(python, "plugins", cwd=tmp_path).stdout
