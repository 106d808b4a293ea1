"""`plan run` end to end on a tiny model: data built once, each point's blocks drawn at
its share, a kill mid-plan resumed without training a finished point again, and the
fit identical to an uninterrupted plan's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import corpus_with_tokenizer
from ecomharness.cli import main

SHARES = [0.1, 0.3, 0.5, 0.7, 0.9]


def _plan(root: Path, name: str, parallel: int = 1) -> Path:
    """A plan over the shop corpus under ``root`` (built once per test session)."""
    sources = json.loads((root / "sources.json").read_text())
    data = {"output": "unused", "tokenizer": str(root / "tok"), "seq_len": 64, "seed": 0, "sources": sources,
            "heldout": {"share": 0.1, "max_documents": 12}}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    train = {"mode": "cpt", "run_dir": "unused", "tokenizer": str(root / "tok"),
             "model": {"init": {"architecture": "bloom", "hidden_size": 32, "n_layer": 1, "n_head": 2}},
             "data": {"path": "unused"},
             "training": {"max_steps": 6, "per_device_train_batch_size": 4, "learning_rate": 3e-3,
                          "logging_steps": 1, "seed": 0},
             "deepspeed": None, "eval": {"mode": "off"}}
    (root / "train.yaml").write_text(yaml.safe_dump(train))
    plan = {"output": str(root / name), "data": "data.yaml", "train": "train.yaml",
            "grid": {"domain_shares": SHARES, "evaluations": 2}, "parallel": parallel}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plan")
    sources = corpus_with_tokenizer(root, n_products=150, n_general=300, seed=5, vocab_size=500)
    (root / "sources.json").write_text(json.dumps(sources))
    return root


def test_print_commands_prepares_every_point_once_and_draws_its_share(corpus, capsys):
    plan = _plan(corpus, "printed")
    assert main(["plan", "run", str(plan), "--print-commands"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("ecomharness train ")]
    assert len(commands) == len(SHARES)
    domain_blocks = []
    for share, command in zip(SHARES, commands):
        recipe = Path(command.split()[-1])
        point = json.loads((recipe.parent / "point.json").read_text())
        assert point["domain_share"] == share
        blocks = point["blocks"]
        assert blocks["domain"] + blocks["general"] == 6 * 4  # max_steps x batch: one epoch is the run
        assert blocks["domain"] == round(share * 24)
        stats = json.loads((recipe.parent / "data" / "stats.json").read_text())
        assert stats["plan_point"]["blocks"] == blocks and stats["tokenizer_fingerprint"]
        raw = yaml.safe_load(recipe.read_text())
        assert raw["training"]["save_steps"] == 3 and raw["eval"]["inline"]["metadata"]["heldout_dir"].endswith("heldout")
        domain_blocks.append(blocks["domain"])
    assert domain_blocks == sorted(domain_blocks)
    # Built once: a second call finds both builds and every point as they were.
    built = {side: (corpus / "printed" / "data" / side / "stats.json").stat().st_mtime_ns for side in ("domain", "general")}
    assert main(["plan", "run", str(plan), "--print-commands"]) == 0
    assert "built already" in capsys.readouterr().out
    assert {side: (corpus / "printed" / "data" / side / "stats.json").stat().st_mtime_ns
            for side in built} == built
    # Another grid into the same folder is refused, naming what differs.
    raw = yaml.safe_load(plan.read_text())
    raw["grid"]["domain_shares"] = [0.2, 0.3, 0.5, 0.7, 0.9]
    plan.write_text(yaml.safe_dump(raw))
    assert main(["plan", "run", str(plan)]) == 2
    assert "holds another plan (differs in domain_shares)" in capsys.readouterr().err


def test_bad_plans_name_the_field(corpus, capsys):
    plan = _plan(corpus, "bad")
    raw = yaml.safe_load(plan.read_text())
    for change, message in [({"grid": {"domain_shares": [0.1, 0.5, 0.9]}}, "at least 5"),
                            ({"grid": {"domain_shares": [0.1, 0.2, 0.3, 0.4, 1.2]}}, r"domain_shares\[4\]: expected a share"),
                            ({"grid": {"domain_shares": SHARES, "evaluations": 1}}, r"grid\.evaluations"),
                            ({"parallel": 0}, r"\.parallel: expected a whole number"),
                            ({"gird": {}}, "gird")]:
        plan.write_text(yaml.safe_dump({**raw, **change}))
        assert main(["plan", "run", str(plan)]) == 2
        err = capsys.readouterr().err
        assert __import__("re").search(message, err), err


def _observations(plan_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (plan_dir / "observations.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_killed_plan_resumes_without_retraining_and_fits_the_same(corpus, capsys):
    # Trained as `ecomharness train` subprocesses, two at a time; the killed one in this process.
    whole = _plan(corpus, "whole", parallel=2)
    assert main(["plan", "run", str(whole)]) == 0
    assert all((p / "train.log").is_file() for p in (corpus / "whole" / "points").iterdir())
    killed = _plan(corpus, "killed")
    first_done = corpus / "killed" / "points" / "share0.100" / "run" / "train_done.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", "import sys; from ecomharness.cli import main; sys.exit(main())",
                                "plan", "run", str(killed)], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not first_done.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first_done.is_file(), "the first point never finished"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = first_done.read_text()
    stamp = first_done.stat().st_mtime_ns
    assert not (corpus / "killed" / "observations.jsonl").exists()

    capsys.readouterr()
    assert main(["plan", "run", str(killed)]) == 0
    out = capsys.readouterr().out
    assert "point share0.100: trained already" in out
    assert "point share0.100: training" not in out
    assert "training ..." in out  # the kill left later points to train
    assert first_done.read_text() == finished and first_done.stat().st_mtime_ns == stamp
    # Every point evaluated at both budgets, and the same numbers as the plan never killed.
    got, want = _observations(corpus / "killed"), _observations(corpus / "whole")
    assert len(got) == len(SHARES) * 2
    key = lambda o: (o["domain_share"], o["tokens"])  # noqa: E731
    for a, b in zip(sorted(got, key=key), sorted(want, key=key)):
        assert [a[k] for k in ("domain_share", "tokens", "model_params")] == \
               [b[k] for k in ("domain_share", "tokens", "model_params")]
        assert np.isclose(a["general_loss"], b["general_loss"], rtol=1e-9)
        assert np.isclose(a["domain_loss"], b["domain_loss"], rtol=1e-9)
    fits = {}
    for name in ("killed", "whole"):
        assert main(["plan", "fit", str(corpus / name), "--starts", "2"]) == 0
        fits[name] = json.loads((corpus / name / "fit.json").read_text())
    for side in ("general", "domain"):
        for k, v in fits["whole"][side]["params"].items():
            assert np.isclose(fits["killed"][side]["params"][k], v, rtol=1e-6), (side, k)
