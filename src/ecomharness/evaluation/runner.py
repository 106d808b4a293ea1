"""Run one lm-eval evaluation from ``lm_eval run`` flags, over every plugin's tasks."""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.util import did_you_mean

log = logging.getLogger("ecomharness.eval")


def resolve_tasks(requested: list[str], task_manager, problems: list | None = None) -> list:
    """Turn task names, globs and YAML paths into what ``simple_evaluate`` takes.

    Mirrors lm-eval's own resolution, but an unknown name raises ``UserError`` with the
    closest known names (and the broken task files found, ``problems``), instead of
    lm-eval's bare "Tasks not found"; a group naming an unknown member is an error too.
    """
    resolved: list = []
    missing: list[str] = []
    for spec in dict.fromkeys(requested):
        if spec.endswith(".yaml"):
            # TaskManager.load() takes YAML paths as they are.
            matches = sorted(str(Path(f).resolve()) for f in glob.glob(spec))
        else:
            matches = task_manager.match_tasks([spec])
        if not matches:
            missing.append(spec)
        for match in matches:
            if match not in resolved:
                resolved.append(match)
    if missing:
        lines = []
        for name in missing:
            lines.append(f"{name!r}{did_you_mean(name, task_manager.all_tasks, n=3)}")
        broken = "".join(f"\n  broken task file: {p}" for p in problems or [])
        raise UserError(
            "not a registered task: " + "; ".join(lines)
            + ". See `ecomharness tasks` for what is installed" + (f"; perhaps one of these:{broken}" if broken else ".")
        )
    from ecomharness.taskcheck import missing_group_members
    from ecomharness.taskdata import check_locations
    from ecomharness.tasks import leaf_task_configs

    # A broken file behind a requested task stops the run here, naming the file; broken
    # files elsewhere were reported and do not block other tasks.
    files = {_yaml_file(task_manager, name) for name in _walk_names(task_manager, resolved)}
    blocking = [p for p in problems or [] if Path(p.file).resolve() in files] + missing_group_members(task_manager, resolved)
    if blocking:
        raise UserError("broken task definition(s):\n  " + "\n  ".join(str(p) for p in blocking))

    # Every folder missing from the user's data is named at once, before any is read.
    check_locations(leaf_task_configs(task_manager, resolved), dict(task_manager.metadata or {}))
    return resolved


def _walk_names(task_manager, names: list) -> set[str]:
    """Every task, group and tag name under ``names``."""
    seen: set[str] = set()
    todo = [n for n in names if isinstance(n, str)]
    while todo:
        name = todo.pop()
        if name in seen or name not in task_manager.task_index:
            continue
        seen.add(name)
        entry = task_manager.task_index[name]
        cfg = entry.cfg or {}
        members = cfg.get("task") if "group" in cfg else (sorted(entry.tags) if entry.tags and not cfg else [])
        for member in members if isinstance(members, list) else [members]:
            todo.append(member.get("task") if isinstance(member, dict) else member)
    return seen


def _yaml_file(task_manager, name: str):
    path = getattr(task_manager.task_index[name], "yaml_path", None)
    return Path(path).resolve() if path else None


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def evaluate_from_cli(args, explicit_device: bool) -> int:
    """Evaluate as ``lm_eval run`` would with the parsed ``args``; return the exit code."""
    from lm_eval.config.evaluate_config import EvaluatorConfig

    from ecomharness import tasks as plugin_tasks

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

    from ecomharness.taskcheck import check_sources, checking_loads

    plugin_tasks.import_metric_modules()
    problems = check_sources(cfg.include_path)
    plugin_tasks.report_problems(problems)
    task_manager = plugin_tasks.build_task_manager(
        requested, include_path=cfg.include_path, metadata=cfg.metadata
    )
    task_list = resolve_tasks(requested, task_manager, problems)
    checking_loads(task_manager)

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
        log_samples=cfg.log_samples,
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
    samples = results.pop("samples", None) if cfg.log_samples else None
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
    return 0


def run_provenance(results: dict | None = None) -> dict:
    """What produced a result: ecomharness version, the plugins loaded, and where each
    task's documents came from (origin, source, content fingerprint, counts)."""
    from ecomharness import __version__
    from ecomharness.plugins import list_plugins
    from ecomharness.taskdata import DATA_SOURCES

    tasks = set((results or {}).get("results", {}))
    return {
        "data_sources": {task: DATA_SOURCES[task] for task in sorted(tasks) if task in DATA_SOURCES},
        "version": __version__,
        "plugins": [
            {"name": p.name, "distribution": p.distribution, "version": p.version}
            for p in list_plugins()
        ],
    }
