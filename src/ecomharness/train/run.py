"""Run a training recipe: CPT or SFT with HF Trainer (+ DeepSpeed), every checkpoint evaluated.

Reads top to bottom: components are built in dependency order, training is the one
``Trainer(...)`` call. Re-running the same recipe after a crash resumes from the last
checkpoint; checkpoints already in the ledger are not evaluated again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from transformers import TrainerCallback

from ecomharness.errors import UserError
from ecomharness.train import components
from ecomharness.train.callbacks.inline_eval import inline_callback
from ecomharness.train.lssd import build_loss
from ecomharness.train.recipe import TrainRecipe, parse_recipe
from ecomharness.train.run_dir import (
    DONE_MARKER,
    complete_checkpoints,
    done_marker,
    has_started,
    is_main_process,
    recipe_file,
    set_aside_incomplete,
    trainer_state,
)
from ecomharness.util import load_yaml_file, write_text_atomic, sole_writer

__all__ = ["DONE_MARKER", "check_recipe", "run_training"]


class SaveOnFinish(TrainerCallback):
    """Save at the last step even when ``save_steps`` does not divide ``max_steps``, so
    the final model is a checkpoint and gets evaluated like the others."""

    def on_step_end(self, args, state, control, **kwargs):
        """Ask for a save at the last step."""
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_save = True


@contextlib.contextmanager
def single_process_env(needed: bool):
    """A one-process rendezvous for DeepSpeed outside its launcher (it looks for MPI
    otherwise). The variables are removed afterwards: every process this one starts
    later would inherit them and try to join a rendezvous it cannot reach. The process
    group itself stays up, as DeepSpeed keeps using it for later runs in this process."""
    if not needed or "RANK" in os.environ:
        yield
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    values = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _keep_recipe(recipe: TrainRecipe, log) -> None:
    """Write RUN_DIR/recipe.yaml (absolute paths), or check a resumed run is the same.

    The run directory's own path is not part of the identity: a run moved (or mounted
    elsewhere) resumes, and its kept recipe is updated to the new place.
    """
    import yaml

    kept = recipe_file(recipe.run_dir)
    raw = recipe.to_raw()
    if kept.is_file():
        old = load_yaml_file(kept, "kept recipe")
        if not isinstance(old, dict):
            raise UserError(f"{kept}: not a recipe (expected a mapping); delete the old run or use another run_dir")
        # Compared as read now: a recipe kept by an earlier release (the one-task-set eval
        # form, say) is the same recipe if it reads the same.
        old = {**parse_recipe(old, where=str(kept)).to_raw(), "run_dir": old.get("run_dir")}
        changed = sorted(k for k in set(old) | set(raw) if k != "run_dir" and old.get(k) != raw.get(k))
        if changed and not has_started(recipe.run_dir):
            # An earlier command stopped before training (bad data, a missing model): its
            # recipe was never run, so the corrected one replaces it.
            log(f"[train] {kept} was kept by a command that never started training: replaced by this recipe "
                f"(it differed in {', '.join(changed)})")
            if is_main_process():
                write_text_atomic(kept, yaml.safe_dump(raw, allow_unicode=True, sort_keys=True))
            return
        if changed:
            raise UserError(f"{recipe.run_dir} holds a run of a different recipe (differs in {', '.join(changed)}); "
                            "use another run_dir or delete the old run")
        if old.get("run_dir") == raw["run_dir"] or not is_main_process():
            return
        log(f"[train] the run moved from {old.get('run_dir')} to {raw['run_dir']}: resuming here")
    # Every rank of a multi-process run gets here; atomic, so none reads half a file.
    write_text_atomic(kept, yaml.safe_dump(raw, allow_unicode=True, sort_keys=True))


def _keep_curriculum_order(recipe: TrainRecipe, training: dict, log) -> None:
    """A curriculum-ordered build is read in order: HF Trainer's default sampler would
    shuffle the easy-to-hard order away. An explicit ``train_sampling_strategy`` wins."""
    stats_file = components.build_stats_file(recipe)
    if stats_file is None:
        return
    try:
        curriculum = json.loads(stats_file.read_text(encoding="utf-8")).get("curriculum")
    except (OSError, ValueError):
        return
    if not curriculum:
        return
    chosen = training.setdefault("train_sampling_strategy", "sequential")
    if chosen == "sequential":
        log(f"[train] {stats_file.parent.name} is ordered by a curriculum ({curriculum.get('by')}, "
            f"{len(curriculum.get('stages', []))} stage(s)): reading it in order")
    else:
        log(f"[train] warning: {stats_file.parent.name} is ordered by a curriculum but "
            f"train_sampling_strategy={chosen!r} will not keep that order")


def _resume_point(run_dir: Path, log) -> Path | None:
    """The newest complete checkpoint of a run, or None.

    HF Trainer writes ``trainer_state.json`` last, so a checkpoint without it was cut off
    mid-save (a kill) and cannot be resumed from: rank 0 moves it aside to
    ``incomplete-checkpoint-N`` (reported, never deleted), and training resumes from the
    newest complete one and saves step N again.
    """
    set_aside_incomplete(run_dir, log)
    complete = complete_checkpoints(run_dir)
    return complete[-1][1] if complete else None


def _check_tokenizer(recipe: TrainRecipe, tokenizer, log) -> None:
    """Refuse packed data encoded with another vocabulary (the ids would mean other
    tokens) unless ``data.allow_tokenizer_mismatch``; data built before the build
    recorded its tokenizer is trained on with a warning."""
    from ecomharness.data.records import tokenizer_fingerprint

    stats_file = components.build_stats_file(recipe)
    if stats_file is None:
        return
    try:
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{stats_file}: not a readable build report ({exc})") from exc
    built_with = stats.get("tokenizer_fingerprint") if isinstance(stats, dict) else None
    if built_with is None:
        log(f"[train] warning: {stats_file} does not record its tokenizer: cannot check it matches this one")
        return
    ours = tokenizer_fingerprint(tokenizer)
    if built_with == ours:
        return
    message = (f"data.path: {stats_file.parent} was built with another tokenizer ({stats.get('tokenizer')}, "
               f"vocabulary {built_with}) than this run's ({recipe.tokenizer or recipe.model.path}, vocabulary {ours})")
    if not recipe.data.allow_tokenizer_mismatch:
        raise UserError(message + "; rebuild the data with this tokenizer, or set data.allow_tokenizer_mismatch: true")
    log(f"[train] warning: {message} (allowed by data.allow_tokenizer_mismatch)")


def _finished_state(checkpoint: Path | None) -> dict | None:
    """The trainer state of a checkpoint at or past its run's last step, else None."""
    if checkpoint is None:
        return None
    state = trainer_state(checkpoint)
    max_steps, step = state.get("max_steps"), state.get("global_step")
    if isinstance(max_steps, int) and isinstance(step, int) and max_steps > 0 and step >= max_steps:
        return state
    return None


def check_recipe(recipe: TrainRecipe) -> list[str]:
    """``train --check``: everything that can be checked without training. The model
    and tokenizer load (an ``init`` model is only configured), the data is a build
    output made with this tokenizer, the DeepSpeed config and gate policy parse, and
    every evaluation task resolves with its data found. Returns the lines to print;
    raises ``UserError`` at the first problem."""
    from ecomharness.gate.policy import load_policy
    from ecomharness.evaluation.checkpoint import CheckpointEvaluator
    from ecomharness.registry import gate_rules

    lines = []
    tokenizer = components.load_tokenizer(recipe)
    lines.append(f"tokenizer {recipe.tokenizer or recipe.model.path}: {len(tokenizer)} tokens")
    if recipe.model.path is not None and not Path(recipe.model.path).exists():
        raise UserError(f"model.path: {recipe.model.path} does not exist")
    lines.append(f"model: {recipe.model.path or 'initialised from ' + str(recipe.model.init)}")
    if recipe.mode == "cpt":
        components.cpt_dataset(recipe)
        _check_tokenizer(recipe, tokenizer, lambda message: lines.append(message.removeprefix("[train] ")))
        lines.append(f"data: {recipe.data.path} is a `data build` output")
    else:
        missing = [d for d in recipe.data.instruction_dirs if not Path(d).is_dir()]
        if missing:
            raise UserError(f"data.instruction_dirs: {', '.join(missing)} not found")
    try:
        config = recipe.deepspeed_config()
    except (OSError, ValueError) as exc:
        raise UserError(f"deepspeed: {recipe.deepspeed}: not a JSON config ({exc})") from exc
    lines.append(f"deepspeed: {'none' if config is None else recipe.deepspeed}")
    if recipe.eval.gate:
        load_policy(recipe.eval.gate, known_kinds=set(gate_rules.names()))
        lines.append(f"gate policy {recipe.eval.gate}: valid")
    for name, profile in recipe.eval.profiles().items():
        # Built as training will build them: the data is loaded, so the line below says
        # where each task's documents will really come from, and `samples` is checked.
        evaluator = CheckpointEvaluator(profile.settings())
        origins: dict[str, list[str]] = {}
        for task, source in sorted(evaluator.data_sources.items()):
            origins.setdefault(source.get("origin", "unknown"), []).append(task)
        line = f"eval ({name}): {len(evaluator.task_names)} task(s) or group(s) resolve, " \
               f"{len(evaluator.loaded['tasks'])} task(s) load"
        bundled = origins.pop("bundled", [])
        if origins:
            line += "; data from " + ", ".join(f"{origin} ({len(tasks)})" for origin, tasks in sorted(origins.items()))
        if bundled:
            line += (f"; WARNING: {len(bundled)} task(s) will read the sample bundled with ecomharness, not your "
                     f"data: {', '.join(bundled)}")
            if any(task.startswith("heldout") for task in bundled):
                line += " (no held-out slice was found: give the data build a heldout block or set heldout_dir)"
        lines.append(line)
    if not recipe.eval.profiles():
        lines.append("eval: off")
    return lines


def run_training(recipe: TrainRecipe, log=print) -> dict:
    """Train as the recipe says; return a summary (steps, train and eval seconds)."""
    try:
        recipe.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"run_dir {recipe.run_dir}: cannot be created ({exc.strerror or exc})") from exc
    # One training command per run directory (its main process holds the lock; the other
    # ranks of the same job write through it): a second would save into the same
    # checkpoint folders.
    lock = sole_writer(recipe.run_dir / ".train.lock", f"run directory {recipe.run_dir}") \
        if is_main_process() else contextlib.nullcontext()
    with lock:
        _keep_recipe(recipe, log)
        ds_config = recipe.deepspeed_config()
        with single_process_env(ds_config is not None):
            return _run(recipe, ds_config, log)


def _run(recipe: TrainRecipe, ds_config: dict | None, log) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    tokenizer = components.load_tokenizer(recipe)
    if recipe.mode == "cpt":
        _check_tokenizer(recipe, tokenizer, log)
    model = components.load_model(recipe, tokenizer)
    if recipe.mode == "cpt":
        dataset, collator = components.cpt_dataset(recipe), components.cpt_collator
        seq_len = len(dataset[0]["input_ids"])
    else:
        dataset, collator = components.sft_dataset(recipe, tokenizer), components.sft_collator(tokenizer.pad_token_id)
        seq_len = recipe.data.max_length

    training = dict(recipe.training)
    training.setdefault("report_to", [])
    if recipe.mode == "cpt":
        _keep_curriculum_order(recipe, training, log)
    if ds_config is None:
        _forget_deepspeed()
    args = TrainingArguments(
        output_dir=str(recipe.run_dir),
        save_strategy="steps",
        use_cpu=not torch.cuda.is_available(),
        deepspeed=ds_config,
        **training,
    )
    world = max(args.world_size, 1)
    zero_stage = (ds_config or {}).get("zero_optimization", {}).get("stage", 0)
    tokens_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world * seq_len
    inline = inline_callback(recipe.eval, tokenizer, recipe.run_dir, tokens_per_step, zero_stage,
                             components.training_contamination(recipe))
    if recipe.eval.asynchronous is not None and is_main_process():
        log(f"[train] the async evaluation profile is evaluated by another process: "
            f"ecomharness watch {recipe.run_dir}")
    last = _resume_point(recipe.run_dir, log)
    finished = _finished_state(last)
    if finished is not None:
        return _evaluate_finished_run(recipe, inline, finished, model, log)
    callbacks = [SaveOnFinish()] + ([inline] if inline else [])
    # The teacher is copied from the model before training changes it.
    dtype = torch.bfloat16 if training.get("bf16") else torch.float16 if training.get("fp16") else torch.float32
    compute_loss = build_loss(recipe.lssd, model, dtype, zero_stage)

    # processing_class: checkpoints then carry the tokenizer, so `watch` can load them.
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      processing_class=tokenizer, callbacks=callbacks, compute_loss_func=compute_loss)
    if inline is not None:
        inline.attach(trainer)  # needs the Trainer, so after it: metrics go through trainer.log
    if last:
        log(f"[train] resuming from {last}")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    seconds = time.perf_counter() - start
    eval_seconds = inline.eval_seconds if inline else 0.0
    summary = {"global_step": trainer.state.global_step, "seconds": round(seconds, 3),
               "train_seconds": round(seconds - eval_seconds, 3), "eval_seconds": round(eval_seconds, 3),
               "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
               "failed_evaluations": [r["checkpoint"] for r in inline.failures] if inline else []}
    if trainer.is_world_process_zero():
        write_text_atomic(done_marker(recipe.run_dir), json.dumps(summary, indent=2) + "\n")
    return summary


def _forget_deepspeed() -> None:
    """Before a run without DeepSpeed in a process that already ran one with it:
    accelerate leaves ``ACCELERATE_USE_DEEPSPEED=true`` in the environment (which
    TrainingArguments reads as "use DeepSpeed") and its state in a process-wide
    singleton, transformers its DeepSpeed config, so the next Trainer would start
    DeepSpeed again (and stop: no LOCAL_RANK outside its launcher). Measured: the demo's
    base pre-trained with ZeRO-2, then a plan's proxy without DeepSpeed in the same
    process."""
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
    unset_hf_deepspeed_config()
    AcceleratorState._reset_state(reset_partial_state=True)


def _evaluate_finished_run(recipe: TrainRecipe, inline, state: dict, model, log) -> dict:
    """A re-run of a run that reached its last step: no training (another step would
    make a model nobody asked for); evaluate only what the ledger lacks, exactly as the
    loop would have (the inline callback's own ``begin``); write the done marker only if
    the first run died before writing it."""
    log(f"[train] {recipe.run_dir} already reached its last step ({state['global_step']}): no training; "
        "evaluating what the ledger lacks")
    start = time.perf_counter()
    if inline is not None and is_main_process():
        for record in inline.begin(model, int(state.get("save_steps") or 0), state["max_steps"], recipe.eval.on_start):
            log(f"[train] evaluated {record['checkpoint']}: {record['status']}")
    failures = [r["checkpoint"] for r in inline.failures] if inline else []
    eval_seconds = time.perf_counter() - start
    marker = done_marker(recipe.run_dir)
    if marker.is_file():
        summary = json.loads(marker.read_text(encoding="utf-8"))
        summary.update(eval_seconds=round(eval_seconds, 3), train_seconds=0.0, failed_evaluations=failures)
        return summary
    summary = {"global_step": state["global_step"], "seconds": round(eval_seconds, 3), "train_seconds": 0.0,
               "eval_seconds": round(eval_seconds, 3),
               "losses": [h["loss"] for h in state.get("log_history", []) if "loss" in h],
               "failed_evaluations": failures}
    if is_main_process():
        write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
    return summary
