"""Document scorers of the Efficient-CPT (FinPythia) paper: ETS-DACP and ETA-DACP.

- ``similarity`` (ETS-DACP, task-similar): cosine similarity between a document's
  embedding and the centroid of the task data's embeddings. The default embedder is a
  hashed TF-IDF over words and bigrams (no model needed; Chinese by characters and
  character bigrams, or by jieba words); ``EncoderEmbedder`` uses any local HF encoder
  or sentence-transformers folder instead.
- ``perplexity`` (ETA-DACP novelty): perplexity under a small proxy causal LM (any local
  HF model path), batched. Higher = more novel to the proxy.
- ``pos_entropy`` (ETA-DACP diversity): entropy of the part-of-speech tag distribution
  (jieba.posseg for Chinese); for English NLTK's tagger when its data is installed,
  otherwise the entropy of the token-type distribution. ``methods`` counts which.

Each scorer is ``score(texts) -> np.ndarray`` with a ``config`` dict that identifies it
for the score cache.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ecomharness.errors import UserError
from ecomharness.formats.common import RecordError, iter_jsonl
from ecomharness.metrics.text import has_cjk, tokenize
from ecomharness.registry import selectors
from ecomharness.util import reject_unknown_keys

N_FEATURES = 2 ** 18


def _features(text: str) -> list[str]:
    tokens = tokenize(text)
    grams = [f"w:{t}" for t in tokens]
    # Character bigrams carry Chinese words; word bigrams carry English phrases.
    grams += [f"b:{a}{b}" if has_cjk(a) else f"b:{a} {b}" for a, b in zip(tokens, tokens[1:])]
    return grams


def _jieba_features(text: str) -> list[str]:
    import jieba

    words = [w for w in (piece.strip().lower() for piece in jieba.lcut(text)) if w and any(c.isalnum() for c in w)]
    return [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in zip(words, words[1:])]


def _load_local(path, model_class: str, device: str | None):
    """``(tokenizer, model, device)`` for a local model folder, model in eval mode. Batches
    are padded, so a tokenizer without a pad token pads with EOS."""
    import torch
    import transformers

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = getattr(transformers, model_class).from_pretrained(path).to(device).eval()
    return tokenizer, model, device


def _tokenized_batches(tokenizer, texts: list[str], batch_size: int, max_length: int, device: str):
    """``(rows, batch)``: tokenized batches of texts of similar length (less padding, so
    fewer wasted FLOPs on corpora of mixed lengths); callers write results back by row."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for begin in range(0, len(order), batch_size):
        rows = order[begin : begin + batch_size]
        batch = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True, truncation=True,
                          max_length=max_length)
        yield rows, batch.to(device)


class TfidfEmbedder:
    """Hashed TF-IDF vectors (L2-normalised). The IDF is fitted on the task texts only,
    so a document's score does not depend on the rest of the corpus (and can be cached).
    ``zh="jieba"`` cuts Chinese into jieba words instead of characters and bigrams."""

    def __init__(self, zh: str = "chars"):
        from sklearn.feature_extraction.text import HashingVectorizer

        if zh not in ("chars", "jieba"):
            raise UserError(f"select.scorers.similarity.embedder.zh: expected chars or jieba, got {zh!r}")
        analyzer = _features
        if zh == "jieba":
            import jieba

            jieba.setLogLevel(60)
            analyzer = _jieba_features
        self.hasher = HashingVectorizer(analyzer=analyzer, n_features=N_FEATURES, alternate_sign=False, norm=None)
        self.idf = None
        self.config = {"embedder": "tfidf-hash", "n_features": N_FEATURES, **({"zh": zh} if zh != "chars" else {})}

    def fit(self, texts: list[str]) -> TfidfEmbedder:
        """Fit the IDF on ``texts``."""
        from sklearn.feature_extraction.text import TfidfTransformer

        self.idf = TfidfTransformer(sublinear_tf=True).fit(self.hasher.transform(texts))
        return self

    def transform(self, texts: list[str]):
        """Sparse L2-normalised TF-IDF rows."""
        return self.idf.transform(self.hasher.transform(texts))


class EncoderEmbedder:
    """Mean- (or CLS-) pooled, L2-normalised vectors from a local encoder folder.

    Reads plain HF encoders (``AutoModel``) and sentence-transformers folders alike: a
    sentence-transformers folder keeps the transformer at its root and its pooling mode
    in ``1_Pooling/config.json``, which is honoured, so the package itself is not needed.
    """

    def __init__(self, path: str, batch_size: int = 32, max_length: int = 256, pooling: str | None = None,
                 device: str | None = None):
        import json

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise UserError(f"select.scorers.similarity.embedder.path: {path} is not a local HF model folder "
                            "(no config.json)")
        pooling_file = folder / "1_Pooling" / "config.json"
        if pooling is None and pooling_file.is_file():
            mode = json.loads(pooling_file.read_text(encoding="utf-8"))
            pooling = "cls" if mode.get("pooling_mode_cls_token") else "mean"
        pooling = pooling or "mean"
        if pooling not in ("mean", "cls"):
            raise UserError(f"select.scorers.similarity.embedder.pooling: expected mean or cls, got {pooling!r}")
        self.tokenizer, self.model, self.device = _load_local(folder, "AutoModel", device)
        self.batch_size, self.max_length, self.pooling = batch_size, max_length, pooling
        self.config = {"embedder": "encoder", "path": str(folder.resolve()), "pooling": pooling,
                       "max_length": max_length}

    def fit(self, texts: list[str]) -> EncoderEmbedder:
        """Nothing to fit: the encoder is fixed."""
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        """One unit-length row per text."""
        import torch

        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for rows, batch in _tokenized_batches(self.tokenizer, texts, self.batch_size, self.max_length, self.device):
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state.float()
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out


class SimilarityScorer:
    """ETS-DACP: cosine similarity to the centroid of the task documents."""

    def __init__(self, task_texts: list[str], embedder=None):
        if not task_texts:
            raise UserError("selector 'similarity' needs task data: name tasks or give a file of task texts")
        self.embedder = (embedder or TfidfEmbedder()).fit(task_texts)
        centroid = np.asarray(self.embedder.transform(task_texts).mean(axis=0)).ravel()
        norm = np.linalg.norm(centroid)
        self.centroid = centroid / norm if norm else centroid
        digest = hashlib.sha256("\n".join(task_texts).encode("utf-8")).hexdigest()[:16]
        self.config = {"scorer": "similarity", **self.embedder.config, "task_texts": digest}

    def score(self, texts: list[str]) -> np.ndarray:
        """Cosine similarity of each text to the task centroid."""
        return np.asarray(self.embedder.transform(texts) @ self.centroid).ravel()


class PerplexityScorer:
    """ETA-DACP novelty: perplexity under a proxy causal LM (local path), batched."""

    def __init__(self, model_path: str, batch_size: int = 16, max_length: int = 512, device: str | None = None):
        self.tokenizer, self.model, self.device = _load_local(model_path, "AutoModelForCausalLM", device)
        self.batch_size, self.max_length = batch_size, max_length
        self.config = {"scorer": "perplexity", "model": str(model_path), "max_length": max_length}

    def score(self, texts: list[str]) -> np.ndarray:
        """exp(mean token negative log-likelihood) of each text."""
        import torch

        out = np.zeros(len(texts))
        for rows, batch in _tokenized_batches(self.tokenizer, texts, self.batch_size, self.max_length, self.device):
            with torch.no_grad():
                logits = self.model(**batch).logits[:, :-1].float()
            targets = batch["input_ids"][:, 1:]
            mask = batch["attention_mask"][:, 1:].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            mean = (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[rows] = torch.exp(mean).cpu().numpy()
        return out


def entropy(counts: Counter) -> float:
    """Shannon entropy (nats) of a count distribution."""
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values() if c) if total else 0.0


def nltk_tagger():
    """``(name, tag(words) -> tags)`` from NLTK's perceptron tagger when NLTK and its
    tagger data are installed (nothing is downloaded), else ``None``."""
    try:
        import nltk

        for resource in ("averaged_perceptron_tagger_eng", "averaged_perceptron_tagger"):
            try:
                nltk.data.find(f"taggers/{resource}")
            except LookupError:
                continue
            return f"nltk.pos_tag ({resource})", lambda words: [tag for _, tag in nltk.pos_tag(words)]
    except ImportError:
        pass
    return None


class PosEntropyScorer:
    """ETA-DACP diversity: entropy of POS tags (Chinese: jieba; English: an offline
    tagger when one is installed, else token types).

    ``english_tagger`` is ``(name, tag(words) -> tags)``; by default NLTK's perceptron
    tagger if its data is present (see :func:`nltk_tagger`)."""

    def __init__(self, english_tagger=...):
        import jieba
        import jieba.posseg

        jieba.setLogLevel(60)
        self._cut = jieba.posseg.lcut
        self.english = nltk_tagger() if english_tagger is ... else english_tagger
        english = self.english[0] if self.english else "token-type entropy"
        self.config = {"scorer": "pos_entropy", "zh": "jieba.posseg", "en": english}
        self.methods: Counter = Counter()

    def score(self, texts: list[str]) -> np.ndarray:
        """Entropy per text; ``methods`` counts how many texts used each method."""
        out = []
        for text in texts:
            if has_cjk(text):
                self.methods["jieba.posseg"] += 1
                out.append(entropy(Counter(pair.flag for pair in self._cut(text))))
            elif self.english is not None:
                self.methods[self.english[0]] += 1
                words = tokenize(text)
                out.append(entropy(Counter(self.english[1](words))) if words else 0.0)
            else:
                self.methods["token-type entropy"] += 1
                out.append(entropy(Counter(tokenize(text))))
        return np.asarray(out)


# ---------------------------------------------------------------- factories
# What a recipe's `select.scorers.NAME` (or `curriculum.by`) block builds, registered
# through ``ecomharness_selectors`` like any plugin's: options in, scorer out.


def build_scorer(name: str, options: dict, where: str | None = None):
    """A scorer from its recipe options (built-in or through ``ecomharness_selectors``).

    Factories name their options as they sit in a ``select`` block
    (``select.scorers.NAME.option``); ``where`` renames that for options that sit
    elsewhere (``curriculum``), so errors point at the right place in the recipe."""
    try:
        return selectors.get(name)(options)
    except UserError as exc:
        if where is None:
            raise
        raise UserError(str(exc).replace(f"select.scorers.{name}", where)) from exc


def task_texts(tasks: list[str]) -> list[str]:
    """Texts of registered tasks' few-shot (else test) documents: prompt and answer."""
    from ecomharness.tasks.lint import load_checked
    from ecomharness.tasks.open import open_tasks

    opened = open_tasks(tasks)
    texts = []
    for task in load_checked(opened.manager, opened.names)["tasks"].values():
        docs = list(task.fewshot_docs() or task.test_docs())
        for doc in docs:
            target = task.doc_to_target(doc)
            texts.append(f"{task.doc_to_text(doc)}{target if isinstance(target, str) else ''}")
    return texts


def embedder_from(options: dict | None):
    """The similarity embedder: ``None``/``{zh: chars|jieba}`` for hashed TF-IDF, or
    ``{path: DIR, batch_size, max_length, pooling, device}`` for a local encoder."""
    where = "select.scorers.similarity.embedder"
    if options is not None and not isinstance(options, dict):
        raise UserError(f"{where}: expected a mapping, got {options!r}")
    options = dict(options or {})
    if "path" not in options:
        reject_unknown_keys(options, {"zh"}, where)
        return TfidfEmbedder(**options)
    reject_unknown_keys(options, {"path", "batch_size", "max_length", "pooling", "device"}, where)
    return EncoderEmbedder(str(options["path"]), int(options.get("batch_size", 32)),
                           int(options.get("max_length", 256)), options.get("pooling"), options.get("device"))


def similarity(options: dict):
    """ETS-DACP scorer from ``{tasks: [...]}`` and/or ``{file: texts.jsonl}``, and an
    optional ``embedder`` (see :func:`embedder_from`)."""
    reject_unknown_keys(options, {"tasks", "file", "embedder"}, "select.scorers.similarity")
    texts = []
    if options.get("tasks"):
        texts += task_texts(list(options["tasks"]))
    if options.get("file"):
        path = Path(options["file"])
        if not path.is_file():
            raise UserError(f"select.scorers.similarity.file: {path} does not exist")
        texts += _texts_of_file(path)
    return SimilarityScorer(texts, embedder_from(options.get("embedder")))


def _texts_of_file(path: Path) -> list[str]:
    """The ``text`` field of every line of a JSON Lines file; bad lines are errors."""
    texts = []
    for number, record in iter_jsonl(path):
        if isinstance(record, RecordError):
            raise UserError(f"select.scorers.similarity.file: {record}")
        if not isinstance(record.get("text"), str) or not record["text"].strip():
            raise UserError(f"select.scorers.similarity.file: {path}:{number}: expected a non-empty string field 'text'")
        texts.append(record["text"])
    return texts


def perplexity(options: dict):
    """ETA-DACP novelty scorer from ``{model: PATH, batch_size, max_length, device}``."""
    reject_unknown_keys(options, {"model", "batch_size", "max_length", "device"}, "select.scorers.perplexity")
    if not options.get("model") or not Path(options["model"]).exists():
        raise UserError(f"select.scorers.perplexity.model: a local proxy model path is needed, got {options.get('model')!r}")
    return PerplexityScorer(options["model"], int(options.get("batch_size", 16)), int(options.get("max_length", 512)),
                            options.get("device"))


def pos_entropy(options: dict):
    """ETA-DACP diversity scorer (no options)."""
    reject_unknown_keys(options, set(), "select.scorers.pos_entropy")
    return PosEntropyScorer()
