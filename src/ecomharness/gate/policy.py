"""Gate policies: YAML validated into dataclasses; unknown keys are errors.

    # ecomharness gate --policy train/gates/default.yaml --candidate RESULTS --baseline RESULTS
    alpha: 0.05                  # significance level for rules that use it
    rank_by: {task: ecom_icl, metric: score}     # for --checkpoint best / best-passing
    allow: []                    # fail-closed reasons allowed for every rule (see below)
    rules:
      - name: domain gains
        kind: min_gain            # min | max_drop | min_gain | joint | a plugin's kind
        tasks: [ecom_icl]         # names or globs
        metric: score
        threshold: 0.0            # absolute, or "5%" of the baseline
        significant: false        # min_gain: also require a significant gain
      - name: no forgetting
        kind: max_drop
        tasks: [general_icl]
        threshold: 0.02
        alpha: 0.05               # max_drop: a drop fails only when significant
        # direction: lower       # for metrics where lower is better (bits_per_byte)
        max_detectable_effect: 0.05  # optional: fail (underpowered) when the documents
                                     # could not have detected a difference this large
    correction: holm             # optional: Holm-Bonferroni across the significance tests
    bootstrap: {resamples: 10000, seed: 0}   # the paired bootstrap's settings

Significance is tested on paired evidence: both sides' per-document scores, matched by
document id (``gate/paired.py``). Where either side lacks them, or their documents
differ, a rule that needs a test fails closed (``unpaired``) unless ``allow: [unpaired]``
lets the unpaired z-test on the two standard errors decide, which the reason then says.

Every value is checked where it is read (finite thresholds, a drop threshold >= 0, alpha
strictly between 0 and 1, ``significant`` a real boolean), and a task name or glob that
matches no result fails as ``missing``.

Fail-closed reasons a rule (or ``allow`` at the top) may allow: ``missing`` (task or
metric absent), ``nan``, ``data_mismatch`` (data fingerprints differ),
``unknown_source`` (no data source recorded), ``version_mismatch`` (task versions differ),
``unpaired`` (no paired evidence: the unpaired z-test may decide). ``underpowered`` (the
minimum detectable effect exceeds ``max_detectable_effect``) cannot be allowed: remove
the requirement instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError
from ecomharness.util import check_share, did_you_mean, load_yaml_file, reject_unknown_keys

ALLOWABLE = ("missing", "nan", "data_mismatch", "unknown_source", "version_mismatch", "unpaired", "contaminated",
             "noise")
CORRECTIONS = ("none", "holm")
# Below 100 resamples a percentile interval is noise; above a million (100 times the
# default, minutes per test on a 2-core machine) a policy would run for hours.
MIN_RESAMPLES, MAX_RESAMPLES = 100, 1_000_000


@dataclass(frozen=True)
class Threshold:
    """An absolute amount, or a fraction of the baseline value (``"5%"``)."""

    amount: float
    relative: bool = False

    def of(self, baseline: float | None) -> float:
        """The absolute amount for a baseline value."""
        if not self.relative:
            return self.amount
        return self.amount * abs(baseline or 0.0)

    def __str__(self) -> str:
        return f"{self.amount * 100:g}% of baseline" if self.relative else f"{self.amount:g}"


@dataclass(frozen=True)
class Rule:
    """One rule; ``options`` holds what a kind needs beyond the common fields."""

    name: str
    kind: str
    tasks: tuple[str, ...] = ()
    metric: str = "score"
    threshold: Threshold | None = None
    alpha: float | None = None
    significant: bool = False
    allow: tuple[str, ...] = ()
    parts: tuple[Rule, ...] = ()  # joint rules
    max_detectable_effect: float | None = None
    direction: str = "higher"  # which way is better: "lower" for bits_per_byte, perplexity
    # (last N checkpoints, k): the difference must exceed k times the candidate run's
    # checkpoint noise (the standard deviation of its last N trained checkpoints).
    noise: tuple[int, float] | None = None
    # (minimum signal-to-noise ratio, "fail" or "skip"): across the candidate's and the
    # baseline's runs over the same last N checkpoints (evaluation/noise.py).
    min_snr: tuple[float, str] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """A whole gate policy."""

    rules: tuple[Rule, ...]
    alpha: float = 0.05
    allow: tuple[str, ...] = ()
    rank_by: tuple[str, str] | None = None
    source: str = ""
    correction: str = "none"
    resamples: int = 10_000
    seed: int = 0
    # The largest share of a task's test documents the candidate's training data may
    # hold before the task fails closed (``contaminated``); the data build measures it.
    max_contamination: float = 0.0


COMMON = {"name", "kind", "tasks", "metric", "threshold", "alpha", "significant", "allow", "parts",
          "max_detectable_effect", "direction", "noise"}
DIRECTIONS = ("higher", "lower")
BUILTIN_KINDS = ("min", "max_drop", "min_gain", "joint")


def _threshold(value: Any, where: str, kind: str) -> Threshold:
    """A finite threshold; for ``max_drop`` not negative (a negative allowed drop is a
    required gain: say ``min_gain``)."""
    threshold = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        threshold = Threshold(float(value))
    elif isinstance(value, str) and value.strip().endswith("%"):
        with contextlib.suppress(ValueError):
            threshold = Threshold(float(value.strip()[:-1]) / 100, relative=True)
    if threshold is None or not math.isfinite(threshold.amount):
        raise UserError(f"{where}.threshold: expected a finite number or a percentage like '5%', got {value!r}")
    if kind == "max_drop" and threshold.amount < 0:
        raise UserError(f"{where}.threshold: the allowed drop cannot be negative, got {value!r} "
                        "(to require a gain, use kind: min_gain)")
    return threshold


def _alpha(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise UserError(f"{where}: expected a number between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def _text(raw: dict, key: str, default: str, where: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}.{key}: expected a non-empty text, got {value!r}")
    return value


def _allow(value: Any, where: str) -> tuple[str, ...]:
    if value is not None and not isinstance(value, (str, list)):
        raise UserError(f"{where}.allow: expected a reason or a list of them, got {value!r}")
    items = [value] if isinstance(value, str) else list(value or [])
    for item in items:
        if item not in ALLOWABLE:
            raise UserError(f"{where}.allow: {item!r} is not one of {', '.join(ALLOWABLE)}")
    return tuple(items)


SNR_BELOW = ("fail", "skip")


def _min_snr(raw: Any, where: str) -> tuple[float, str] | None:
    """A rule's ``noise.min_snr`` (a positive number) and ``noise.below`` (fail or skip)."""
    if not isinstance(raw, dict) or raw.get("min_snr") is None:
        if isinstance(raw, dict) and "below" in raw:
            raise UserError(f"{where}.below: only with min_snr")
        return None
    value, below = raw["min_snr"], raw.get("below", "fail")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{where}.min_snr: expected a positive number, got {value!r}")
    if below not in SNR_BELOW:
        raise UserError(f"{where}.below: expected one of {SNR_BELOW}, got {below!r}")
    return float(value), below


def _noise(raw: Any, where: str) -> tuple[int, float] | None:
    """A rule's ``noise: {last: N, k: K, min_snr: S, below: fail|skip}``: N trained
    checkpoints (3 or more), K > 0 (``_min_snr`` reads the rest)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"last", "k", "min_snr", "below"}:
        raise UserError(f"{where}: expected {{last: N, k: K, min_snr: S, below: fail|skip}}, got {raw!r}")
    last, k = raw.get("last", 5), raw.get("k", 2.0)
    if isinstance(last, bool) or not isinstance(last, int) or last < 3:
        raise UserError(f"{where}.last: expected a whole number of checkpoints >= 3, got {last!r}")
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k <= 0:
        raise UserError(f"{where}.k: expected a positive number, got {k!r}")
    return last, float(k)


def _rule(raw: Any, where: str, known_kinds: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping")
    kind = raw.get("kind")
    if kind not in known_kinds:
        raise UserError(f"{where}.kind: {kind!r} is not a rule kind{did_you_mean(kind, known_kinds)}; "
                        f"known: {', '.join(sorted(known_kinds))}")
    builtin = kind in BUILTIN_KINDS
    if builtin:
        reject_unknown_keys(raw, COMMON, where)
    name = _text(raw, "name", kind, where)
    significant = raw.get("significant", False)
    if not isinstance(significant, bool):
        # YAML reads `no` as false but "no" (quoted) as text, which bool() calls true.
        raise UserError(f"{where}.significant: expected true or false, got {significant!r}")
    if kind == "joint":
        parts = raw.get("parts")
        if not isinstance(parts, list) or len(parts) < 2:
            raise UserError(f"{where}.parts: a joint rule needs at least two parts")
        sub = tuple(_rule(p, f"{where}.parts[{i}]", known_kinds - {"joint"}) for i, p in enumerate(parts))
        return Rule(name=name, kind=kind, parts=sub, allow=_allow(raw.get("allow"), where))
    tasks = raw.get("tasks")
    if isinstance(tasks, str):
        tasks = [tasks]
    if builtin and (not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks)):
        raise UserError(f"{where}.tasks: expected a list of task or group names (globs allowed)")
    if builtin and "threshold" not in raw:
        raise UserError(f"{where}: missing required key 'threshold'")
    alpha = raw.get("alpha")
    direction = raw.get("direction", "higher")
    if direction not in DIRECTIONS:
        raise UserError(f"{where}.direction: expected higher or lower (which way is better), got {direction!r}")
    mde = raw.get("max_detectable_effect")
    if mde is not None and (isinstance(mde, bool) or not isinstance(mde, (int, float)) or not math.isfinite(mde)
                            or mde <= 0):
        raise UserError(f"{where}.max_detectable_effect: expected a positive number, got {mde!r}")
    return Rule(
        noise=_noise(raw.get("noise"), f"{where}.noise"), min_snr=_min_snr(raw.get("noise"), f"{where}.noise"),
        name=name, kind=kind, tasks=tuple(tasks or ()), metric=_text(raw, "metric", "score", where),
        threshold=_threshold(raw["threshold"], where, kind) if "threshold" in raw else None,
        alpha=None if alpha is None else _alpha(alpha, f"{where}.alpha"), significant=significant,
        allow=_allow(raw.get("allow"), where), max_detectable_effect=None if mde is None else float(mde),
        direction=direction, options={k: v for k, v in raw.items() if k not in COMMON},
    )


def parse_policy(raw: Any, where: str = "policy", known_kinds: set[str] | None = None) -> Policy:
    """Validate a parsed policy mapping."""
    known_kinds = set(known_kinds or BUILTIN_KINDS)
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping at the top level")
    reject_unknown_keys(raw, {"rules", "alpha", "allow", "rank_by", "correction", "bootstrap", "max_contamination"},
                        where)
    max_contamination = check_share(raw.get("max_contamination", 0.0), f"{where}.max_contamination")
    correction = raw.get("correction", "none")
    if correction not in CORRECTIONS:
        raise UserError(f"{where}.correction: expected one of {', '.join(CORRECTIONS)}, got {correction!r}")
    bootstrap = raw.get("bootstrap") or {}
    if not isinstance(bootstrap, dict):
        raise UserError(f"{where}.bootstrap: expected {{resamples: N, seed: N}}, got {bootstrap!r}")
    reject_unknown_keys(bootstrap, {"resamples", "seed"}, f"{where}.bootstrap")
    resamples, seed = bootstrap.get("resamples", 10_000), bootstrap.get("seed", 0)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or not MIN_RESAMPLES <= resamples <= MAX_RESAMPLES:
        raise UserError(f"{where}.bootstrap.resamples: expected a whole number from {MIN_RESAMPLES} to "
                        f"{MAX_RESAMPLES:,}, got {resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"{where}.bootstrap.seed: expected a whole number, got {seed!r}")
    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw:
        raise UserError(f"{where}.rules: at least one rule is needed")
    alpha = _alpha(raw.get("alpha", 0.05), f"{where}.alpha")
    rank_by = raw.get("rank_by")
    if rank_by is not None:
        if not isinstance(rank_by, dict) or set(rank_by) - {"task", "metric"} or "task" not in rank_by:
            raise UserError(f"{where}.rank_by: expected {{task: NAME, metric: NAME}}")
        rank_by = (_text(rank_by, "task", "", f"{where}.rank_by"), _text(rank_by, "metric", "score", f"{where}.rank_by"))
    rules = tuple(_rule(r, f"{where}.rules[{i}]", known_kinds) for i, r in enumerate(rules_raw))
    return Policy(rules=rules, alpha=alpha, allow=_allow(raw.get("allow"), where), rank_by=rank_by,
                  source=where, correction=correction, resamples=resamples, seed=seed,
                  max_contamination=max_contamination)


def load_policy(path: str | Path, known_kinds: set[str] | None = None) -> Policy:
    """Read and validate a policy file."""
    path = Path(path).expanduser()
    raw = load_yaml_file(path, "policy")
    return dataclasses.replace(parse_policy(raw, str(path), known_kinds), source=str(path))
