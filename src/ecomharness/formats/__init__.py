"""Readers that turn files in public data formats into lm-eval documents.

Each reader is registered through the ``ecomharness_record_formats`` hook and is called
as ``reader(path, on_error="raise"|"skip", **options)``, returning a ``ReadResult``.
"""
