"""Checkpoint noise, signal and their ratio (Heineman et al., 2025, "Signal and Noise").

A checkpoint's score moves from one save to the next by more than the sampling error
of its documents. With the paper's definitions, over the final checkpoints of a run:

    noise  = std(m_last_n) / mean(m_last_n)                 (population standard deviation)
    signal = max_{j,k} |m_j - m_k| / mean(m)                 (over the runs compared, m_j the
                                                              mean of run j's last n scores)
    SNR    = signal / noise                                  (noise pooled over the runs' last n)

A task whose SNR is low cannot tell the runs apart; a difference between two
checkpoints smaller than a few times the noise is within what training alone moves.
"""

from __future__ import annotations

import math

import numpy as np

from ecomharness.evaluation.checkpoint_names import is_trained

HEADLINE_METRICS = ("score", "acc", "bits_per_byte")
# Fewer checkpoints than this say nothing about noise.
MIN_LAST = 3
# The checkpoints each ledger record's noise is taken over (``report --noise-last``'s
# default too).
NOISE_LAST = 5


def headline_metric(metrics: dict, metric: str | None = None) -> str | None:
    """``metric`` if the task reports it; without one, the task's headline metric
    (the first of ``HEADLINE_METRICS`` it reports); else None."""
    if metric is not None:
        return metric if metric in metrics else None
    return next((m for m in HEADLINE_METRICS if m in metrics), None)


def relative_std(values: list[float]) -> float | None:
    """The population standard deviation over the mean's magnitude; None for fewer than
    two values or a zero mean (noise relative to nothing is not a number)."""
    if len(values) < 2:
        return None
    mean = float(np.mean(values))
    return float(np.std(values)) / abs(mean) if mean else None


def signal(scores: list[float]) -> float | None:
    """The largest difference between two runs' scores over their mean's magnitude."""
    if len(scores) < 2:
        return None
    mean = float(np.mean(scores))
    return (max(scores) - min(scores)) / abs(mean) if mean else None


def signal_to_noise(signal_value: float | None, noise_value: float | None) -> float | None:
    """Signal over noise: infinite when the checkpoints did not move at all but the runs
    differ; zero when the runs do not differ, whatever the noise (0/0 was read as
    infinite, which passed any ``min_snr``)."""
    if signal_value is None or noise_value is None:
        return None
    if not noise_value:
        return math.inf if signal_value else 0.0
    return signal_value / noise_value


def _value(record: dict, task: str, metric: str) -> float | None:
    entry = (record.get("metrics") or {}).get(task)
    if isinstance(entry, tuple):  # a drawn record: (metric, value, stderr)
        return entry[1] if entry[0] == metric else None
    found = (entry or {}).get(metric)
    value = found.get("value") if isinstance(found, dict) else None
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _names(entry) -> dict:
    return {entry[0]: None} if isinstance(entry, tuple) else (entry or {})


def checkpoint_noise(records: list[dict], last: int = 5, metric: str | None = None) -> dict[str, dict]:
    """Per task, the noise over the last ``last`` trained checkpoints that report its
    metric (``init``, the starting model, is not one): the metric, the checkpoints, their
    values, mean, standard deviation and ``noise``. A task with fewer such checkpoints
    is left out. ``records``: one per checkpoint, ordered by step (``latest_ok_records``)."""
    trained = [r for r in records if is_trained(r.get("checkpoint", ""))]
    tasks = sorted({t for r in trained for t in (r.get("metrics") or {})})
    out = {}
    for task in tasks:
        names = [headline_metric(_names((r.get("metrics") or {}).get(task)), metric) for r in trained]
        name = next((n for n in reversed(names) if n is not None), None)
        if name is None:
            continue
        points = [(r["checkpoint"], v) for r in trained if (v := _value(r, task, name)) is not None][-last:]
        if len(points) < last:
            continue
        values = [v for _, v in points]
        out[task] = {"metric": name, "checkpoints": [c for c, _ in points], "values": values,
                     "mean": float(np.mean(values)), "std": float(np.std(values)), "noise": relative_std(values)}
    return out


def runs_signal(noise_by_run: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per task found in every run (``checkpoint_noise`` of each): the signal across the
    runs' mean final scores, the noise of all their final scores pooled, and the SNR."""
    runs = list(noise_by_run.values())
    if len(runs) < 2:
        return {}
    shared = sorted(set.intersection(*(set(r) for r in runs)))
    out = {}
    for task in shared:
        if len({r[task]["metric"] for r in runs}) != 1:
            continue
        pooled = [v for r in runs for v in r[task]["values"]]
        s, n = signal([r[task]["mean"] for r in runs]), relative_std(pooled)
        out[task] = {"metric": runs[0][task]["metric"], "signal": s, "noise": n, "snr": signal_to_noise(s, n)}
    return out
