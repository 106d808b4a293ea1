"""Averaged checkpoints: the weight average of a run's last N saves, evaluated and recorded.

A checkpoint's score moves from one save to the next by more than its documents'
sampling error (evaluation/noise.py); averaging the weights of the last saves, as
OLMo-core's model merging and "Signal and Noise" (Heineman et al., 2025) do, smooths
that out. ``ecomharness average RUN --last N`` writes the average to
``RUN/average-last-N/`` (a model folder ``from_pretrained`` reads: the last
checkpoint's config and tokenizer files, the averaged weights), evaluates it with
every evaluation profile of the run's recipe, and records it in the run's ledger as
checkpoint ``average-last-N`` at the last averaged step; ``gate --checkpoint average``
selects it. ``last``, ``best`` and the checkpoint noise read trained saves only, never
an average (evaluation/ledger.py ``is_trained``).

Floating-point tensors are averaged in float64 and cast back to their dtype; any other
tensor (an integer buffer) must be equal in every checkpoint and is copied. Checkpoints
with different tensor names or shapes are refused, naming the first difference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ecomharness.errors import UserError
from ecomharness.evaluation.checkpoint_names import AVERAGE_PREFIX
from ecomharness.train.run_dir import complete_checkpoints, trainer_state

# Files of a checkpoint that describe training, not the model: not copied.
_TRAINING_FILES = ("optimizer", "scheduler", "rng_state", "trainer_state", "training_args", "global_step", "latest",
                   "zero_to_fp32", "scaler")


def average_name(last: int) -> str:
    """The ledger's checkpoint name of an average of the last ``last`` saves."""
    return f"{AVERAGE_PREFIX}{last}"


def chosen_checkpoints(run_dir: Path, last: int) -> list[tuple[int, Path]]:
    """The run's last ``last`` complete checkpoints, by step."""
    if isinstance(last, bool) or not isinstance(last, int) or last < 2:
        raise UserError(f"--last: expected a whole number of checkpoints, at least 2, got {last!r}")
    found = complete_checkpoints(run_dir)
    if len(found) < last:
        raise UserError(f"{run_dir}: {len(found)} complete checkpoint(s) ({', '.join(p.name for _, p in found) or 'none'}), "
                        f"fewer than --last {last}: training may have kept fewer (save_total_limit)")
    return found[-last:]


def _load(path: Path):
    """The model of a checkpoint and its tensors by name."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype="auto")
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a model checkpoint transformers can read ({exc})") from exc
    return model, {name: tensor.detach() for name, tensor in model.state_dict().items()}


def average_weights(paths: list[Path], out_dir: Path) -> dict:
    """Write the weight average of the checkpoints ``paths`` to ``out_dir`` (replaced
    whole, through a temporary folder beside it); return what was averaged."""
    import torch

    model, first = _load(paths[0])
    sums = {name: t.to(torch.float64).clone() if t.is_floating_point() else t.clone() for name, t in first.items()}
    # The last checkpoint's model object carries the config; its weights are replaced below.
    last_model = model
    for path in paths[1:]:
        other_model, other = _load(path)
        if set(other) != set(first):
            missing = sorted(set(first) ^ set(other))[0]
            raise UserError(f"{path}: its tensors differ from {paths[0].name}'s (first: {missing!r}); "
                            "only checkpoints of one model can be averaged")
        for name, tensor in other.items():
            if tensor.shape != first[name].shape:
                raise UserError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                f"{tuple(first[name].shape)} in {paths[0].name}")
            if tensor.is_floating_point():
                sums[name] += tensor.to(torch.float64)
            elif not torch.equal(tensor, first[name]):
                raise UserError(f"{path}: non-floating tensor {name!r} differs from {paths[0].name}'s: "
                                "it cannot be averaged")
        last_model = other_model  # the one before it is let go
    averaged = {name: (s / len(paths)).to(first[name].dtype) if first[name].is_floating_point() else s
                for name, s in sums.items()}
    last_model.load_state_dict(averaged)
    tmp = out_dir.with_name(f".{out_dir.name}.writing")
    shutil.rmtree(tmp, ignore_errors=True)
    last_model.save_pretrained(tmp, safe_serialization=True)
    for item in paths[-1].iterdir():  # tokenizer and generation files, as the checkpoint has them
        if item.is_file() and not (tmp / item.name).exists() and not item.name.startswith(_TRAINING_FILES) \
                and not item.name.endswith((".safetensors", ".bin", ".pt")) and item.name != "model.safetensors.index.json":
            shutil.copy2(item, tmp / item.name)
    manifest = {"averaged": [p.name for p in paths], "tensors": len(averaged)}
    (tmp / "average.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return manifest


def average_run(run_dir: str | Path, last: int, device: str | None = None, log_fn=print) -> list[dict]:
    """Average the run's last ``last`` checkpoints, evaluate the average with every
    profile of the run's recipe and append the records to its ledger; return them."""
    import torch

    from ecomharness.evaluation.checkpoint import CheckpointEvaluator
    from ecomharness.evaluation.ledger import evaluate_and_record, read_ledger
    from ecomharness.train.components import training_contamination
    from ecomharness.train.recipe import parse_recipe
    from ecomharness.train.run_dir import ledger_path, recipe_file
    from ecomharness.util import load_yaml_file

    run_dir = Path(run_dir)
    kept = recipe_file(run_dir)
    if not kept.is_file():
        raise UserError(f"{run_dir}: not a training run directory (no {kept.name})")
    recipe = parse_recipe(load_yaml_file(kept, "kept recipe"), where=str(kept))
    profiles = recipe.eval.profiles()
    if not profiles:
        raise UserError(f"{kept}: the recipe evaluates nothing (eval is off): an average would not be evaluated")
    chosen = chosen_checkpoints(run_dir, last)
    name = average_name(last)
    out = run_dir / name
    step = chosen[-1][0]
    earlier = {r.get("step") for r in read_ledger(ledger_path(run_dir)) if r.get("checkpoint") == name}
    if earlier - {step}:
        # The ledger is append-only and reads one record per name: an average of other
        # saves under the same name would be mistaken for this one.
        raise UserError(f"{run_dir}: the ledger already holds {name} ending at step {sorted(earlier)[0]}; this "
                        f"average would end at step {step}: average another number of checkpoints")
    manifest = average_weights([path for _, path in chosen], out)
    state = trainer_state(chosen[-1][1])
    log_fn(f"[average] {name}: {', '.join(manifest['averaged'])} -> {out}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    contamination = training_contamination(recipe)
    records = []
    for profile_name, profile in profiles.items():
        evaluator = CheckpointEvaluator(profile.settings())
        record = evaluate_and_record(
            ledger_path(run_dir), evaluator.settings, name, step,
            lambda: evaluator.evaluate_path(str(out), device=device, dtype=recipe.model.dtype),
            epoch=state.get("epoch"), data_sources=evaluator.data_sources, contamination=contamination)
        if record is None:  # recorded before, ending at the same step: the same average
            log_fn(f"[average] {name} ({profile_name}): already in the ledger")
            continue
        record_note = record.get("error", "")
        log_fn(f"[average] {name} ({profile_name}): {record['status']} in {record['eval_seconds']:.1f}s {record_note}")
        records.append(record)
    return records
