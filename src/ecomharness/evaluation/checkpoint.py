"""Evaluate checkpoints on a fixed task set, building the tasks once.

``CheckpointEvaluator`` loads the tasks (documents, few-shot pools, prompts) when it is
created and reuses them for every checkpoint, so a checkpoint costs its forward passes
and little else (benchmarks/eval_overhead measures it against one `lm_eval` run per
checkpoint). It evaluates an in-memory model without disturbing training: train mode,
the tokenizer and every RNG state are restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ecomharness.errors import UserError

log = logging.getLogger("ecomharness.evaluation")


@dataclass(frozen=True)
class EvalSettings:
    """Every setting that shapes a score; written into each ledger record."""

    tasks: tuple[str, ...]
    limit: int | None = None
    samples: dict[str, list[int]] | None = None
    subset: int | None = None  # documents per task, drawn with ``seed`` (see ``seeded_subset``)
    num_fewshot: int | None = None
    batch_size: int = 8
    max_gen_toks: int | None = None
    include_path: tuple[str, ...] = ()
    seed: int = 1234
    metadata: dict[str, Any] = field(default_factory=dict)
    backend: str = "hf"  # what computes the model's outputs: hf (lm-eval's HFLM) or vllm

    def key(self) -> str:
        """Identifies the task set and settings: a checkpoint is evaluated once per key."""
        fields = asdict(self)
        if fields["subset"] is None:  # added later: the keys of ledgers written before stay the same
            del fields["subset"]
        # Also added later, and for the same reason absent from hf keys. A vllm key differs
        # from the hf one: scores from two engines are two series, never mixed in one
        # curve (the engines' arithmetic differs), and switching evaluates afresh.
        if fields["backend"] == "hf":
            del fields["backend"]
        payload = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def seeded_subset(task: str, size: int, documents: int, seed: int) -> list[int]:
    """``size`` document indices out of ``documents``, drawn at random with ``seed`` and
    the task's name: the same for every checkpoint and every process, independent for
    each task, sorted (lm-eval scores them in file order)."""
    if size >= documents:
        return list(range(documents))
    return sorted(random.Random(f"{seed}/{task}").sample(range(documents), size))


@contextlib.contextmanager
def preserved_training_state(model):
    """Restore train/eval mode and the Python, NumPy and torch RNG states on exit.

    Evaluation draws random numbers (few-shot sampling reseeds Python's ``random``;
    lm-eval may touch the others) and switches the model to eval mode; training after
    an evaluation must continue exactly as if none had happened.
    """
    import numpy as np
    import torch

    was_training = model.training
    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        model.train(was_training)
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _check_samples(samples: dict, tasks: dict) -> None:
    """``UserError`` unless every task ``samples`` names is one of the built leaf tasks
    and every index is a document of it: otherwise lm-eval ignores the entry (and the
    ledger would record a setting that chose nothing) or every evaluation fails."""
    for task, indices in samples.items():
        if task not in tasks:
            raise UserError(f"eval samples: {task!r} is not a task of this profile (its tasks: "
                            f"{', '.join(sorted(tasks))}); samples names leaf tasks, not groups")
        total = len(tasks[task].eval_docs)
        bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < total]
        if bad:
            raise UserError(f"eval samples.{task}: {bad[0]!r} is not a document index of {task} "
                            f"(it has {total} documents: 0 to {total - 1})")


class CheckpointEvaluator:
    """Tasks built once; ``evaluate_model`` / ``evaluate_path`` per checkpoint."""

    def __init__(self, settings: EvalSettings):
        from ecomharness.tasks.lint import load_checked
        from ecomharness.tasks.open import open_tasks

        self.settings = settings
        start = time.perf_counter()

        opened = open_tasks(list(settings.tasks), include_path=list(settings.include_path) or None,
                            metadata=settings.metadata)
        self.task_names = opened.names
        self.task_manager = opened.manager
        self.loaded = load_checked(opened.manager, self.task_names)
        from ecomharness.evaluation.guard import MetricFailures, guard_tasks

        # A metric that fails is recorded for its task (``metric_failures``); the other
        # tasks' results are kept.
        self.failures = MetricFailures()
        guard_tasks(self.loaded, self.failures)
        # A snapshot, taken now: DATA_SOURCES is per process, and another evaluator built
        # later in this process (other settings, same task names) would overwrite it.
        from ecomharness.tasks.data import DATA_SOURCES

        self.data_sources = {name: dict(DATA_SOURCES[name]) for name in self.loaded["tasks"] if name in DATA_SOURCES}
        for task in self.loaded["tasks"].values():
            if settings.num_fewshot is not None and task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=settings.num_fewshot)
            elif task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=settings.seed)
            if settings.max_gen_toks and task.get_config("output_type") == "generate_until":
                task.set_config(key="generation_kwargs", value={"max_gen_toks": settings.max_gen_toks}, update=True)
        if settings.samples is not None:
            _check_samples(settings.samples, self.loaded["tasks"])
        # The seeded subset, drawn once from each task's document count; recorded in
        # every ledger record (``subset``) beside the settings that chose it.
        self.subset: dict[str, dict[str, Any]] = {}
        if settings.subset is not None:
            for name, task in self.loaded["tasks"].items():
                total = len(task.eval_docs)
                self.subset[name] = {"documents": min(settings.subset, total), "of": total, "seed": settings.seed,
                                     "indices": seeded_subset(name, settings.subset, total, settings.seed)}
        self.setup_seconds = time.perf_counter() - start

    def evaluate_lm(self, lm) -> dict:
        """Evaluate an lm-eval model object (``lm_eval.api.model.LM``) on the built tasks:
        the results dict every ledger record is made from."""
        return self._evaluate(lm)

    def _evaluate(self, lm) -> dict:
        from lm_eval.evaluator import evaluate

        samples = self.settings.samples
        if self.subset:
            samples = {name: chosen["indices"] for name, chosen in self.subset.items()}
        # The few-shot sampler's generator advances as it draws: reseeded, every evaluation
        # draws the same examples, so a checkpoint's prompts do not depend on how many
        # checkpoints this evaluator scored before it (they did: each one got new shots).
        for task in self.loaded["tasks"].values():
            task.set_fewshot_seed(seed=self.settings.seed)
        self.failures.reset()
        results = evaluate(
            lm=lm, task_dict=self.loaded, limit=self.settings.limit, samples=samples,
            log_samples=True, verbosity="WARNING",
        )
        if results is None:  # non-zero rank
            return {}
        from ecomharness.evaluation.guard import settle

        metric_failures = settle(results, self.failures)
        if metric_failures:
            results["metric_failures"] = metric_failures
        # Per-document scores for paired tests; the logged samples (prompts, answers)
        # are not kept: the ledger records scores, not transcripts.
        from ecomharness.evaluation.per_document import collect

        results["per_document"] = collect(results, self.task_manager, self.loaded.get("tasks"))
        from ecomharness.evaluation.stderr import fill_bootstrap_stderr

        bootstrap = fill_bootstrap_stderr(results, results["per_document"])
        if bootstrap:
            results["bootstrap_stderr"] = bootstrap
        results.pop("samples", None)
        if self.subset:
            results["subset"] = self.subset
        return results

    def evaluate_model(self, model, tokenizer, data_parallel: bool = False) -> dict:
        """Evaluate an in-memory model (the unwrapped module, not a DeepSpeed engine).

        ``data_parallel``: every rank of the training job calls this at once and
        evaluates its shard of the documents (``evaluation/data_parallel.py``); rank 0
        gets the results, the other ranks an empty dict."""
        from lm_eval.models.huggingface import HFLM

        from ecomharness.evaluation.data_parallel import DataParallelHFLM

        with preserved_training_state(model):
            # A copy: lm-eval may add a pad token or change padding on the tokenizer.
            kind = DataParallelHFLM if data_parallel else HFLM
            lm = kind(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=self.settings.batch_size)
            return self._evaluate(lm)

    def evaluate_path(self, checkpoint_dir: str, device: str = "cpu", dtype: str = "float32",
                      tokenizer: str | None = None) -> dict:
        """Evaluate a checkpoint directory (asynchronous evaluation); ``tokenizer``: its
        own directory when the checkpoint has none (a recipe's starting model)."""
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=checkpoint_dir, device=device, dtype=dtype, batch_size=self.settings.batch_size,
                  **({"tokenizer": tokenizer} if tokenizer else {}))
        return self._evaluate(lm)
