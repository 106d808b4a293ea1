"""Samples: the units the ratio step draws and the packer writes.

A sample is a run of rows of the record table: the mixer's domain samples (product
clusters), then one sample per general record. ``SampleTable`` holds them as flat
arrays (``order`` lists table rows sample after sample; ``bounds`` cuts it), with each
sample's token count as it will be packed, its kind and its language.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecomharness.data.identity import sample_uids

DOMAIN, GENERAL = 0, 1  # values of SampleTable.kind


@dataclass(frozen=True)
class SampleTable:
    """Every sample of a build, before the ratio draw."""

    order: np.ndarray  # int64: table rows, sample after sample
    bounds: np.ndarray  # int64, len(samples) + 1: sample i is order[bounds[i]:bounds[i + 1]]
    tokens: np.ndarray  # int64: tokens of each sample as packed (records, separators, EOS)
    kind: np.ndarray  # int8: DOMAIN or GENERAL
    language: np.ndarray  # each sample's language index (that of its first record)
    uid: np.ndarray  # uint64 content identity of each sample (its records' uids in order)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def sizes(self) -> np.ndarray:
        """Records per sample."""
        return np.diff(self.bounds)

    def rows(self, sample: int) -> np.ndarray:
        """The table rows of one sample, in packing order."""
        return self.order[self.bounds[sample]:self.bounds[sample + 1]]


def sample_table(table, domain_rows: np.ndarray, general_rows: np.ndarray, mix, separator_tokens: int) -> SampleTable:
    """The mixer's domain samples (``mix.order``/``mix.bounds`` index ``domain_rows``),
    then one sample per general record. A sample packs its records joined by the
    separator (``separator_tokens`` long) and closed by one EOS token."""
    order = np.concatenate([domain_rows[mix.order], general_rows]).astype(np.int64)
    bounds = np.concatenate([mix.bounds, mix.bounds[-1] + np.arange(1, len(general_rows) + 1)]).astype(np.int64)
    sizes = np.diff(bounds)
    sample_of_row = np.repeat(np.arange(len(sizes)), sizes)
    tokens = np.bincount(sample_of_row, weights=table.n_tokens[order], minlength=len(sizes)).astype(np.int64)
    tokens += np.maximum(sizes - 1, 0) * separator_tokens + 1
    kind = np.r_[np.full(len(mix), DOMAIN, np.int8), np.full(len(general_rows), GENERAL, np.int8)]
    language = table.language[order[bounds[:-1]]]
    return SampleTable(order=order, bounds=bounds, tokens=tokens, kind=kind, language=language,
                       uid=sample_uids(table.uid[order], bounds))


def sample_texts(table, samples: SampleTable, tokenizer, separator_text: str):
    """``texts(sample_ids)``: each sample's records decoded and joined as they are packed."""

    def texts(ids: list[int]) -> list[str]:
        out = []
        for sample in ids:
            rows = samples.rows(sample).tolist()
            pieces = tokenizer.batch_decode([table.token_ids(row).tolist() for row in rows], skip_special_tokens=True)
            out.append(separator_text.join(pieces))
        return out

    return texts
