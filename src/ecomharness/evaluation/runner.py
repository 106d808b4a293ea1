"""Run one lm-eval evaluation from ``lm_eval run`` flags, over every plugin's tasks."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ecomharness.errors import UserError

log = logging.getLogger("ecomharness.eval")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def evaluate_from_cli(args, explicit_device: bool) -> int:
    """Evaluate as ``lm_eval run`` would with the parsed ``args``; return the exit code."""
    from lm_eval.config.evaluate_config import EvaluatorConfig

    try:
        cfg = EvaluatorConfig.from_cli(args)
    except ValueError as exc:  # lm-eval's checks of flag values (--metadata JSON, --limit, ...)
        raise UserError(f"bad flag value: {exc}") from exc
    requested = [t for item in (cfg.tasks or []) for t in str(item).split(",") if t]
    if not requested:
        raise UserError("no tasks given: pass --tasks NAME[,NAME...] (see `ecomharness tasks`)")
    if "device" in cfg.model_args and not explicit_device:
        # A device inside --model_args would clash with lm-eval's default --device
        # ("multiple values for keyword argument 'device'"): the model's own wins.
        cfg.device = None
    elif not explicit_device and not _cuda_available():
        # lm-eval defaults to cuda:0, which fails outright on a CPU-only torch.
        log.info("No CUDA device: evaluating on cpu (pass --device to choose).")
        cfg.device = "cpu"

    from ecomharness.evaluation.guard import MetricFailures, guard_tasks, settle
    from ecomharness.tasks.lint import checking_loads
    from ecomharness.tasks.open import open_tasks

    opened = open_tasks(requested, include_path=cfg.include_path, metadata=cfg.metadata)
    # A metric that fails is recorded for its task; the other tasks' results are written.
    failures = MetricFailures()
    task_manager = checking_loads(opened.manager, then=lambda loaded: guard_tasks(loaded, failures))
    task_list = opened.names

    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import handle_non_serializable, make_table

    if cfg.output_path:
        cfg.hf_hub_log_args["output_path"] = cfg.output_path
    tracker = EvaluationTracker(**cfg.hf_hub_log_args)
    seeds = cfg.seed or [None, None, None, None]
    results = simple_evaluate(
        model=cfg.model,
        model_args=cfg.model_args,
        tasks=task_list,
        num_fewshot=cfg.num_fewshot,
        batch_size=cfg.batch_size,
        max_batch_size=cfg.max_batch_size,
        device=cfg.device,
        use_cache=cfg.use_cache,
        cache_requests=cfg.cache_requests.get("cache_requests", False),
        rewrite_requests_cache=cfg.cache_requests.get("rewrite_requests_cache", False),
        delete_requests_cache=cfg.cache_requests.get("delete_requests_cache", False),
        limit=cfg.limit,
        samples=cfg.samples,
        check_integrity=cfg.check_integrity,
        write_out=cfg.write_out,
        # Always: the per-document scores come from the logged samples. Whether the
        # samples themselves are saved is still --log_samples's business.
        log_samples=True,
        evaluation_tracker=tracker,
        system_instruction=cfg.system_instruction,
        apply_chat_template=cfg.apply_chat_template,
        fewshot_as_multiturn=cfg.fewshot_as_multiturn,
        gen_kwargs=cfg.gen_kwargs,
        task_manager=task_manager,
        predict_only=cfg.predict_only,
        random_seed=seeds[0],
        numpy_random_seed=seeds[1],
        torch_random_seed=seeds[2],
        fewshot_random_seed=seeds[3],
        confirm_run_unsafe_code=cfg.confirm_run_unsafe_code,
        metadata=cfg.metadata,
    )
    if results is None:  # non-zero ranks in distributed runs
        return 0
    results["ecomharness"] = run_provenance(results)
    # Before anything reads a value: failed and NaN values out, reasons kept.
    metric_failures = settle(results, failures)
    if metric_failures:
        results["ecomharness"]["metric_failures"] = metric_failures
    from ecomharness.evaluation import per_document

    table = per_document.collect(results, task_manager)
    from ecomharness.evaluation.stderr import fill_bootstrap_stderr

    bootstrap = fill_bootstrap_stderr(results, table)
    if bootstrap:  # which stderrs are ecomharness's, not lm-eval's
        results["ecomharness"]["bootstrap_stderr"] = bootstrap
    for task, found in (bootstrap.get("clustered") or {}).items():
        log.warning("task %s: standard errors by cluster of %r: %d clusters of %d documents%s", task, found["key"],
                    found["clusters"], len(table["tasks"][task]["doc_ids"]),
                    f" ({found['unclustered']} documents without the field, each its own cluster)"
                    if found["unclustered"] else "")
    samples = results.pop("samples", None)
    if not cfg.log_samples:
        samples = None
    folder = _results_folder(cfg.output_path, tracker)
    if folder is not None and table["tasks"]:
        results["ecomharness"]["per_document"] = per_document.write(folder, "results", table)
    if cfg.show_config:
        print(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False))
    tracker.save_results_aggregated(results=results, samples=samples)
    if cfg.log_samples and samples:
        for task_name in results["configs"]:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    print(
        f"{cfg.model} ({cfg.model_args}), gen_kwargs: ({cfg.gen_kwargs}), limit: {cfg.limit}, "
        f"num_fewshot: {cfg.num_fewshot}, batch_size: {cfg.batch_size}"
    )
    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    for name, metrics in metric_failures.items():
        for metric, reason in metrics.items():
            print(f"not computed: {name} {metric}: {reason}", file=sys.stderr)
    return 0


def _results_folder(output_path, tracker) -> Path | None:
    """The folder lm-eval's tracker writes the results file into (None: not saved)."""
    if not output_path:
        return None
    path = Path(output_path)
    if path.suffix == ".json":
        return path.parent
    return path / str(tracker.general_config_tracker.model_name_sanitized)


def run_provenance(results: dict | None = None) -> dict:
    """What produced a result: ecomharness version, the plugins loaded, and where each
    task's documents came from (origin, source, content fingerprint, counts)."""
    from ecomharness import __version__
    from ecomharness.plugins import list_plugins
    from ecomharness.tasks.data import DATA_SOURCES

    tasks = set((results or {}).get("results", {}))
    return {
        "data_sources": {task: DATA_SOURCES[task] for task in sorted(tasks) if task in DATA_SOURCES},
        "version": __version__,
        "plugins": [
            {"name": p.name, "distribution": p.distribution, "version": p.version}
            for p in list_plugins()
        ],
    }
