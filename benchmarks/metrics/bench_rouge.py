"""ROUGE-L on long Chinese pairs: ecomharness vs rouge-score, same tokens, one run.

    .venv/bin/python benchmarks/metrics/bench_rouge.py [--pairs 1000] [--chars 300]

Both sides tokenize with ecomharness's CJK tokenizer (rouge-score's own drops Chinese
entirely), so the only difference is the LCS: rouge-score's pure-Python O(n*m) table vs
rapidfuzz's bit-parallel C++. Prints both times, the speed-up ratio, and the largest
score difference (target: >= 20x, identical scores).
"""

from __future__ import annotations

import argparse
import random
import time

from rouge_score.rouge_scorer import RougeScorer

from ecomharness.metrics.rouge import rouge_l
from ecomharness.metrics.text import CJKTokenizer

# A 600-character alphabet drawn from common CJK ideographs; the seed fixes the pairs.
ALPHABET = [chr(0x4E00 + i * 7) for i in range(600)]


def make_pairs(n: int, length: int, seed: int = 0) -> list[tuple[str, str]]:
    """Reference/prediction pairs of ``length`` characters sharing about half their text."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        reference = [rng.choice(ALPHABET[:200]) for _ in range(length)]
        prediction = [c if rng.random() < 0.5 else rng.choice(ALPHABET[:200]) for c in reference]
        rng.shuffle(prediction[: length // 3])
        pairs.append(("".join(reference), "".join(prediction)))
    return pairs


def main() -> None:
    """Time both implementations on the same pairs and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--chars", type=int, default=300)
    args = parser.parse_args()
    pairs = make_pairs(args.pairs, args.chars)

    start = time.perf_counter()
    ours = [rouge_l(prediction, reference) for reference, prediction in pairs]
    ours_s = time.perf_counter() - start

    scorer = RougeScorer(["rougeL"], tokenizer=CJKTokenizer())
    start = time.perf_counter()
    theirs = [scorer.score(reference, prediction)["rougeL"].fmeasure for reference, prediction in pairs]
    theirs_s = time.perf_counter() - start

    max_diff = max(abs(a - b) for a, b in zip(ours, theirs))
    print(f"pairs: {args.pairs} Chinese pairs of {args.chars} characters (seed 0)")
    print(f"ecomharness rouge_l : {ours_s:8.3f} s  ({args.pairs / ours_s:,.0f} pairs/s)")
    print(f"rouge-score rougeL  : {theirs_s:8.3f} s  ({args.pairs / theirs_s:,.0f} pairs/s)")
    print(f"speed-up            : {theirs_s / ours_s:8.1f}x")
    print(f"max |score diff|    : {max_diff:.3g}  (mean ROUGE-L {sum(ours) / len(ours):.4f})")


if __name__ == "__main__":
    main()
