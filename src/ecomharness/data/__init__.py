"""The CPT data pipeline: read -> render -> tokenize -> mix -> ratio -> pack.

``ecomharness data build RECIPE.yaml`` runs it (``build.build_dataset``). Each stage is
a module with one job; stages pass a ``records.RecordTable`` (Arrow-like columns in
numpy arrays, never one Python object per record) and index arrays.
"""
