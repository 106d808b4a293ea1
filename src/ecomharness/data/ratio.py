"""Token ratios: choose how often each sample is used so the mix meets its targets.

Domain samples are all kept once (domain data is the scarce part of CPT). General
samples are drawn per language to ``general_to_domain`` times the domain tokens, split
by the ``general_languages`` weights (EcomGPT-CT: general:domain 2:1, zh:en 1:1 inside
general). A pool larger than its target is down-sampled (samples in the order of a
seeded hash of their content uid, then the prefix that reaches the target); a smaller
one is repeated whole and topped up the same way. Hashes, not a shuffle of positions:
any engine that holds the same samples, in any order, draws the same ones. Without domain samples (or with ``general_to_domain: null``) general samples
are kept as they are and only the language shares are applied, anchored on the
scarcest language.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecomharness.data.identity import mix64, salt
from ecomharness.data.recipe import RatioSpec
from ecomharness.errors import UserError


@dataclass
class DrawnSamples:
    """Sample indices to pack (with repeats), and the token totals that came out."""

    samples: np.ndarray  # int64 indices into the sample list
    tokens_by_group: dict[str, int]
    targets: dict[str, float]


def draw_to_target(pool: np.ndarray, lengths: np.ndarray, target: float, priority: np.ndarray) -> np.ndarray:
    """Indices from ``pool`` whose lengths sum as close to ``target`` as whole samples allow,
    topped up in ``priority`` order (indexed like ``lengths``; equal priorities only for
    samples of equal content)."""
    if target <= 0 or len(pool) == 0:
        return np.zeros(0, np.int64)
    total = int(lengths[pool].sum())
    repeats, remainder = divmod(target, total)
    parts = [np.tile(pool, int(repeats))] if repeats else []
    shuffled = pool[np.argsort(priority[pool], kind="stable")]
    cumulative = np.cumsum(lengths[shuffled])
    # Take the prefix that ends closest to the remaining target.
    cut = int(np.searchsorted(cumulative, remainder))
    if cut < len(cumulative):
        before = cumulative[cut - 1] if cut > 0 else 0
        if abs(cumulative[cut] - remainder) < abs(remainder - before):
            cut += 1
    parts.append(shuffled[:cut])
    return np.concatenate(parts).astype(np.int64)


def draw_samples(sample_tokens: np.ndarray, sample_kind: np.ndarray, sample_language: np.ndarray,
                 sample_uid: np.ndarray, languages: list[str], spec: RatioSpec, seed: int) -> DrawnSamples:
    """Choose samples (with repeats) to meet the ratios of ``spec``.

    ``sample_kind`` is 0 for domain and 1 for general; ``sample_language`` indexes
    ``languages``; ``sample_uid`` is each sample's content identity, which orders the draw. Returns the drawn samples with the target and achieved token totals
    per group (``domain``, ``general/<lang>``; ``general/all`` without language weights).
    """
    priority = mix64(sample_uid, salt(seed, "ratio"))
    domain = np.flatnonzero(sample_kind == 0)
    general = np.flatnonzero(sample_kind == 1)
    domain_tokens = int(sample_tokens[domain].sum())
    present = sorted({languages[i] for i in np.unique(sample_language[general])})
    if spec.general_languages:
        weights = dict(spec.general_languages)
        absent = [lang for lang in weights if lang not in present]
        if absent and len(general):
            raise UserError(f"ratio.general_languages asks for {', '.join(absent)} but no general source has that "
                            f"language (general languages present: {', '.join(present) or 'none'})")
        unweighted = [lang for lang in present if lang not in weights]
        if unweighted:
            raise UserError(f"general sources in {', '.join(unweighted)} have no weight in ratio.general_languages")
        pools = {lang: general[sample_language[general] == languages.index(lang)] for lang in weights if lang in present}
    else:
        weights = {"all": 1.0}
        pools = {"all": general}
    share = {lang: w / sum(weights.values()) for lang, w in weights.items()}

    targets: dict[str, float] = {"domain": float(domain_tokens)}
    chosen = [domain]
    if len(general):
        pool_tokens = {lang: float(sample_tokens[pool].sum()) for lang, pool in pools.items()}
        if spec.general_to_domain is not None and domain_tokens > 0:
            general_target = spec.general_to_domain * domain_tokens
        else:  # no anchor: the largest mix the scarcest language allows without repeats
            general_target = min(pool_tokens[lang] / share[lang] for lang in pools)
        for lang, pool in pools.items():
            targets[f"general/{lang}"] = general_target * share[lang]
            chosen.append(draw_to_target(pool, sample_tokens, general_target * share[lang], priority))
    samples = np.concatenate(chosen).astype(np.int64)
    achieved = {"domain": domain_tokens}
    for lang, pool in pools.items() if len(general) else ():
        achieved[f"general/{lang}"] = int(sample_tokens[samples[np.isin(samples, pool)]].sum())
    return DrawnSamples(samples=samples, tokens_by_group=achieved, targets=targets)
