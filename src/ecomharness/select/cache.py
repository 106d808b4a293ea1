"""Scores cached on disk, keyed by document hash and scorer configuration.

One SQLite file per scorer configuration: re-running a selection with another fraction,
or another sampling mode, scores nothing again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np


def config_key(config: dict) -> str:
    """A short hash of a scorer's configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def doc_key(text: str) -> str:
    """The hash a document's score is stored under."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ScoreCache:
    """``get_or_score(texts, scorer)``: cached scores, computing only the missing ones."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.computed = 0
        self.reused = 0

    def _db(self, scorer) -> sqlite3.Connection:
        db = sqlite3.connect(self.directory / f"{scorer.config['scorer']}-{config_key(scorer.config)}.sqlite")
        db.execute("CREATE TABLE IF NOT EXISTS scores (doc TEXT PRIMARY KEY, value REAL)")
        return db

    def get_or_score(self, texts: list[str], scorer) -> np.ndarray:
        """Scores of ``texts``; missing ones computed by ``scorer`` and stored. A scorer's
        score of a document must depend only on the document and its ``config``."""
        keys = [doc_key(t) for t in texts]
        with self._db(scorer) as db:
            known = {}
            for begin in range(0, len(keys), 900):
                chunk = keys[begin : begin + 900]
                marks = ",".join("?" * len(chunk))
                known.update(db.execute(f"SELECT doc, value FROM scores WHERE doc IN ({marks})", chunk).fetchall())
            missing = [i for i, k in enumerate(keys) if k not in known]
            if missing:
                values = scorer.score([texts[i] for i in missing])
                db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)",
                               [(keys[i], float(v)) for i, v in zip(missing, values)])
                for i, v in zip(missing, values):
                    known[keys[i]] = float(v)
        self.computed += len(missing)
        self.reused += len(keys) - len(missing)
        return np.asarray([known[k] for k in keys])
