"""Per-task metric-vs-step curves (EcomGPT-CT's Figure 3 view) and a markdown table.

A checkpoint's records of every task set are read together (``checkpoint_records``), so
the report draws the inline profile's tasks (held-out bits per byte, ranked choice) and
the async profile's (the generative suite) side by side. Without ``--metric`` each task
is drawn by its headline metric: ``score`` for our generative tasks, ``acc`` for ranked
choice, ``bits_per_byte`` for held-out text (lower is better).
"""

from __future__ import annotations

from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.gate.checkpoints import against_init, init_record
from ecomharness.gate.policy import load_policy
from ecomharness.registry import gate_rules
from ecomharness.resources import bundled_path
from ecomharness.evaluation.ledger import full_record, latest_ok_records, ledger_path, read_ledger, slim_record
from ecomharness.evaluation.noise import HEADLINE_METRICS, MIN_LAST, checkpoint_noise, headline_metric, runs_signal


def _measure(record: dict, task: str, name: str) -> tuple[float, float | None] | None:
    """``(value, stderr)`` of ``name`` for ``task`` in a ledger record, or in a drawn one
    (``drawn_records``: one ``(metric, value, stderr)`` per task); None if absent."""
    entry = record.get("metrics", {}).get(task)
    if isinstance(entry, tuple):
        return entry[1:] if entry[0] == name else None
    found = (entry or {}).get(name)
    return None if found is None else (found["value"], found["stderr"])


def _names(entry) -> dict:
    return {entry[0]: None} if isinstance(entry, tuple) else entry


def series(records: list[dict], metric: str | None = None) -> dict[str, list[tuple[int, float, float | None]]]:
    """``{task: [(step, value, stderr), ...]}`` for every task/group reporting ``metric``
    (without one: each task's headline metric, see ``metric_names``)."""
    chosen = metric_names(records, metric)
    out: dict[str, list[tuple[int, float, float | None]]] = {}
    for record in records:
        for task in record.get("metrics", {}):
            measure = _measure(record, task, chosen.get(task, ""))
            if measure is not None:
                out.setdefault(task, []).append((record["step"], *measure))
    return out


def metric_names(records: list[dict], metric: str | None = None) -> dict[str, str]:
    """The metric drawn for each task: ``metric``, or the task's headline metric."""
    names: dict[str, str] = {}
    for record in records:
        for task, entry in record.get("metrics", {}).items():
            chosen = headline_metric(_names(entry), metric)
            if chosen is not None:
                names.setdefault(task, chosen)
    return names


def flat_series(data: dict[str, list]) -> dict[str, float]:
    """Tasks whose metric has the same value at every one of two or more checkpoints,
    with that value: a panel of them is a flat line that says nothing but its value."""
    return {name: points[0][1] for name, points in data.items()
            if len(points) > 1 and all(p[1] == points[0][1] for p in points)}


def apart_reasons(data: dict[str, list], apart: dict[str, str] | None = None) -> dict[str, str]:
    """Why each task left out of the panels is left out: the caller's reason (``apart``),
    else the one value it had at every checkpoint (``flat_series``)."""
    reasons = {name: f"{value:.4f} at every checkpoint" for name, value in flat_series(data).items()}
    reasons.update({name: why for name, why in (apart or {}).items() if name in data})
    return dict(sorted(reasons.items()))


def plot_curves(data: dict[str, list], path: Path, groups: set[str], metric: str | dict[str, str],
                apart: dict[str, str] | None = None) -> Path:
    """One panel per task or group, the metric (one name, or one per task) against the
    training step, stderr bands. Tasks in ``apart`` (task -> reason) get no panel: they
    are named under the panels with their reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import textwrap

    apart = apart or {}
    names = sorted((n for n in data if n not in apart), key=lambda n: (n not in groups, n))
    cols = min(4, max(1, len(names)))
    rows = max(1, (len(names) + cols - 1) // cols)
    # Under the panels: the tasks drawn apart, grouped by reason, wrapped to the width.
    by_reason: dict[str, list[str]] = {}
    for name, why in apart.items():
        by_reason.setdefault(why, []).append(name)
    notes = [line for why, tasks in by_reason.items()
             for line in textwrap.wrap(f"Not drawn, {why}: {', '.join(tasks)}", width=int(38 * cols),
                                       subsequent_indent="    ")]
    footer = 0.2 * len(notes) + (0.3 if notes else 0.0)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + footer), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps = [p[0] for p in data[name]]
        values = [p[1] for p in data[name]]
        ax.plot(steps, values, marker="o", color="tab:red" if name in groups else "tab:blue")
        errs = [p[2] for p in data[name]]
        if all(e is not None for e in errs):
            ax.fill_between(steps, [v - e for v, e in zip(values, errs)], [v + e for v, e in zip(values, errs)],
                            alpha=0.2, color="tab:red" if name in groups else "tab:blue")
        ax.set_title(name + (" (group)" if name in groups else ""), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(metric if isinstance(metric, str) else metric[name], fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if notes:
        height = 2.6 * rows + footer
        fig.tight_layout(rect=(0, footer / height, 1, 1))
        fig.text(0.01, (footer - 0.1) / height, "\n".join(notes), fontsize=8, va="top", ha="left")
    else:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown_table(records: list[dict], metric: str | None = None) -> str:
    """Checkpoints as rows, tasks and groups as columns: value ± stderr (the column
    names the metric where it is not ``score``)."""
    data = series(records, metric)
    chosen = metric_names(records, metric)
    groups = {g for r in records for g in r.get("groups", [])}
    names = sorted(data, key=lambda n: (n not in groups, n))
    titles = [name if chosen[name] == "score" else f"{name} ({chosen[name]})" for name in names]
    header = "| checkpoint | step | tokens seen | " + " | ".join(titles) + " |"
    lines = [header, "|" + "---|" * (3 + len(names))]
    for record in records:
        cells = []
        for name in names:
            m = _measure(record, name, chosen[name])
            if m is None:
                cells.append("")
            else:
                cells.append(f"{m[0]:.4f}" + (f" ± {m[1]:.4f}" if m[1] is not None else ""))
        tokens = record.get("tokens_seen")
        lines.append(f"| {record['checkpoint']} | {record['step']} | {tokens if tokens is not None else ''} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _drawn(record: dict, offset: int, metric: str | None) -> dict:
    """What the report shows of a record, kept as the ledger is read: the slim fields,
    its groups, and per task the one metric it draws (``metric``, or the task's headline)
    as a ``(metric, value, stderr)`` tuple: a 100,000-checkpoint ledger is drawn from a
    few hundred bytes per checkpoint, not from every metric, data source and setting."""
    slim = slim_record(record, offset)
    slim["groups"] = record.get("groups", [])
    drawn = {}
    for task, measures in (record.get("metrics") or {}).items():
        name = headline_metric(measures, metric)
        if name is not None:
            drawn[task] = (name, measures[name]["value"], measures[name]["stderr"])
    slim["metrics"] = drawn
    slim["contamination"] = record.get("contamination") or {}
    return slim


def drawn_records(run_dir: str | Path, metric: str | None = None) -> list[dict]:
    """A run's checkpoints as the report draws them (``latest_ok_records``, slim)."""
    return latest_ok_records(read_ledger(ledger_path(run_dir), strict=True,
                                         keep=lambda record, offset: _drawn(record, offset, metric)))


def check_noise_last(last: int) -> int:
    """``--noise-last``: at least ``MIN_LAST`` checkpoints."""
    if isinstance(last, bool) or not isinstance(last, int) or last < MIN_LAST:
        raise UserError(f"--noise-last: expected a whole number >= {MIN_LAST}, got {last!r}")
    return last


def noise_lines(noise: dict[str, dict], last: int) -> list[str]:
    """The report's section on checkpoint noise."""
    lines = ["## Checkpoint noise", "",
             f"Over the last {last} trained checkpoints: the standard deviation of each task's metric relative to "
             "its mean (Heineman et al., 2025). A difference between checkpoints within a few times this is what "
             "training alone moves.", ""]
    if not noise:
        return lines + [f"No task has {last} trained checkpoints evaluated yet.", ""]
    lines += ["| task | metric | mean | std | noise (relative std) |", "|---|---|--:|--:|--:|"]
    lines += [f"| {t} | {n['metric']} | {n['mean']:.4f} | {n['std']:.4f} | {_fmt_ratio(n['noise'])} |"
              for t, n in sorted(noise.items())]
    return lines + [""]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, metric: str | None = None,
                 noise_last: int = 5, apart: dict[str, str] | None = None) -> dict[str, Path]:
    """Write ``curves.png`` and ``report.md`` for a run; return their paths.

    A task whose metric had one value at every checkpoint, and any task of ``apart``
    (task -> why, from the caller), gets no panel in the picture: both are listed with
    the reason under the panels and in report.md, and keep their table columns."""
    check_noise_last(noise_last)
    run_dir = Path(run_dir)
    records = drawn_records(run_dir, metric)
    if not records:
        raise UserError(f"{ledger_path(run_dir)}: no successful evaluation recorded yet")
    out = Path(out_dir) if out_dir else run_dir / "report"
    data = series(records, metric)
    if not data:
        raise UserError(f"no task reports the metric {metric!r} (try --metric acc)" if metric else
                        f"no task reports {', '.join(HEADLINE_METRICS)} (name a metric with --metric)")
    groups = {g for r in records for g in r.get("groups", [])}
    reasons = apart_reasons(data, apart)
    png = plot_curves(data, out / "curves.png", groups, metric or metric_names(records), apart=reasons)
    failed = read_ledger(ledger_path(run_dir), strict=True,
                         keep=lambda r, offset: slim_record(r, offset) if r.get("status") == "failed" else None)
    # Rotated away before `watch` pinned them: not evaluated, and no failure either.
    skipped = read_ledger(ledger_path(run_dir), strict=True,
                          keep=lambda r, offset: slim_record(r, offset) if r.get("status") == "skipped" else None)
    md = out / "report.md"
    what = f"`{metric}`" if metric else "each task's headline metric (`score`, else `acc`, else `bits_per_byte`)"
    text = [f"# Evaluation report: {run_dir.name}", "", f"Metric: {what} per checkpoint (value ± stderr "
            "where lm-eval reports one; a blank cell: not evaluated at that checkpoint).", "",
            markdown_table(records, metric), "![curves](curves.png)", ""]
    if reasons:
        text += ["Not drawn (their columns above keep their values):", ""]
        text += [f"- {name}: {why}" for name, why in reasons.items()] + [""]
    text += noise_lines(checkpoint_noise(records, noise_last, metric), noise_last)
    text += contamination_lines(records[-1].get("contamination") or {})
    if failed:
        text += ["## Failed evaluations", ""] + [f"- {r['checkpoint']}: {r.get('error')}" for r in failed] + [""]
    if skipped:
        text += ["## Skipped evaluations", "", "Checkpoints deleted by the trainer's rotation before `watch` could "
                 "pin them: not evaluated.", ""] + [f"- {r['checkpoint']}: {r.get('reason')}" for r in skipped] + [""]
    md.write_text("\n".join(text), encoding="utf-8")
    return {"curves": png, "report": md}


def contamination_lines(contamination: dict) -> list[str]:
    """The report's section on what the training data held of each evaluated task's test
    documents (the data build's decontamination, carried in the ledger records)."""
    if not contamination:
        return []
    lines = ["## Test documents in the training data", "",
             "From the data build's decontamination: documents found in the corpus, and the share still in the "
             "training data (0 when the build dropped the records holding them).", "",
             "| task | found | documents | share in training | build | sources |", "|---|--:|--:|--:|---|---|"]
    for task, entry in sorted(contamination.items()):
        lines.append(f"| {task} | {entry.get('found', 0):,} | {entry.get('documents', 0):,} | "
                     f"{entry.get('share', 0.0):.4f} | {entry.get('action', '')} | "
                     f"{', '.join(entry.get('sources') or []) or '-'} |")
    return lines + [""]


def _contamination_cell(record: dict) -> str:
    held = {t: e for t, e in (record.get("contamination") or {}).items() if e.get("share", 0) > 0}
    if not held:
        return "none" if record.get("contamination") else "not checked"
    return "; ".join(f"{t} {e.get('found')}/{e.get('documents')}" for t, e in sorted(held.items()))


def compare_runs(run_dirs: list[str | Path], domain: str = "ecom_icl", general: str = "general_icl",
                 policy_path: str | Path | None = None, noise_last: int = 5) -> str:
    """Runs side by side (Mix-CPT's ablations): the last checkpoint's domain and general
    group scores and its gate verdict against the run's ``init`` evaluation; then per
    task the signal across the runs, their checkpoint noise and the ratio."""
    check_noise_last(noise_last)
    policy = load_policy(policy_path or bundled_path("train") / "gates" / "default.yaml",
                         known_kinds=set(gate_rules.names()))
    lines = [f"| run | checkpoint | {domain} | {general} | gate vs init | test documents in training |",
             "|---|---|--:|--:|---|---|"]
    for run_dir in run_dirs:
        ledger = ledger_path(run_dir)
        records = latest_ok_records(read_ledger(ledger, strict=True, keep=slim_record))
        if not records:
            raise UserError(f"{ledger}: no successful evaluation recorded yet")
        # Only the two records compared are read whole.
        last = full_record(ledger, records[-1])
        init = init_record(records)
        init = full_record(ledger, init) if init is not None else None
        verdict = against_init(policy, last, init, folder=ledger.parent)
        failed = "; ".join(c.reason for c in verdict.checks if not c.passed)
        cells = []
        for group in (domain, general):
            m = last.get("metrics", {}).get(group, {}).get("score")
            cells.append("n/a" if m is None else f"{m['value']:.4f}" + (f" ± {m['stderr']:.4f}" if m["stderr"] is not None else ""))
        gate = "pass" if verdict.passed else f"FAIL ({failed})"
        lines.append(f"| {Path(run_dir).name} | {last['checkpoint']} | {cells[0]} | {cells[1]} | {gate} | "
                     f"{_contamination_cell(last)} |")
    noise = {str(run_dir): checkpoint_noise(drawn_records(run_dir), noise_last) for run_dir in run_dirs}
    snr = runs_signal(noise)
    lines += ["", f"Signal across the runs and noise over their last {noise_last} checkpoints (Heineman et al., 2025; "
              "tasks every run has that many checkpoints of):", ""]
    if snr:
        lines += ["| task | metric | signal | noise | SNR |", "|---|---|--:|--:|--:|"]
        lines += [f"| {t} | {s['metric']} | {_fmt_ratio(s['signal'])} | {_fmt_ratio(s['noise'])} | "
                  f"{_fmt_ratio(s['snr'], 1)} |" for t, s in snr.items()]
    else:
        lines.append("none (fewer than two runs, or too few checkpoints)")
    return "\n".join(lines) + "\n"


def _fmt_ratio(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return "inf" if value == float("inf") else f"{value:.{digits}f}"
