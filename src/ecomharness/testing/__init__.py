"""Generators that tests and benchmarks share: synthetic corpora at any size, seeded.

Shipped with the package (as ``torch.testing`` is) so that the benchmarks under
``benchmarks/`` and plugin authors' own tests can use them; nothing in the product
imports this package.
"""
