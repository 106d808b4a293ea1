"""Logit-swap self-distillation (LSSD), Mix-CPT's constraint against forgetting.

The full text of the Mix-CPT paper was not available to us; this implements the
mechanism as our issue describes it, with every choice configurable:

- teacher logits come from a frozen copy of the starting model (``teacher: frozen``) or
  from the training model's own logits, detached (``teacher: self``);
- at every target position whose gold next token is not the teacher's top-1, the gold
  token's logit and the top-1 logit are swapped: the gold token ranks first while the
  rest of the distribution keeps its shape (the multiset of logits is unchanged);
- loss = CE + lambda * KL(softmax(swapped teacher / T) || softmax(student / T)), both
  terms averaged over the same target (non-padding) positions. No T^2 factor is applied
  (an assumption; scale lambda instead).

Memory: the frozen teacher never needs gradients (``requires_grad_(False)``, eval mode,
``torch.no_grad``) and is cast to the training dtype (bf16 when training is bf16), so
it costs one extra copy of the weights and no optimizer state. With DeepSpeed ZeRO 0-2
each process holds that copy on the training device. ZeRO-3 shards the student, not a
copy made before sharding, so there the frozen teacher is kept on the CPU (slow, but
it fits); ``teacher: self`` costs no copy at all under any stage.

It plugs into HF Trainer through ``compute_loss_func`` (no Trainer subclass). Trainer
hands that function the outputs and labels but not the inputs, so a forward pre-hook
on the student keeps the latest ``input_ids``/``attention_mask`` for the teacher.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ecomharness.train.recipe import LSSDConfig

__all__ = ["IGNORE", "LSSDConfig", "LSSDLoss", "build_loss", "lssd_loss", "swap_gold_to_top"]

IGNORE = -100


def swap_gold_to_top(teacher_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Teacher logits with the gold token's logit and the top-1 logit exchanged.

    ``teacher_logits``: (..., V); ``targets``: (...) gold token ids, ``IGNORE`` where no
    target exists (those rows are returned unchanged). Where gold already is the top-1
    nothing changes.
    """
    logits = teacher_logits.clone()
    valid = targets != IGNORE
    gold = targets.clamp(min=0).unsqueeze(-1)
    top = logits.argmax(dim=-1, keepdim=True)
    gold_value = logits.gather(-1, gold)
    top_value = logits.gather(-1, top)
    swapped = logits.scatter(-1, gold, top_value).scatter(-1, top, gold_value)
    # scatter order matters when gold == top: both writes put back the same value.
    return torch.where(valid.unsqueeze(-1), swapped, logits)


def lssd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              weight: float, temperature: float, num_items_in_batch=None) -> torch.Tensor:
    """CE + weight * KL(swapped teacher || student) over the target positions.

    ``labels`` are the model inputs' labels (HF convention: shifted here, ``-100``
    ignored); ``num_items_in_batch`` normalises like HF's own causal-LM loss so that
    gradient accumulation sees the same scale.
    """
    logits = student_logits[..., :-1, :].float()
    targets = labels[..., 1:].to(logits.device)
    mask = targets != IGNORE
    denominator = num_items_in_batch if num_items_in_batch is not None else mask.sum()
    denominator = torch.as_tensor(denominator, device=logits.device, dtype=logits.dtype).clamp(min=1)
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE,
                         reduction="sum") / denominator
    if weight == 0:
        return ce
    with torch.no_grad():
        teacher = swap_gold_to_top(teacher_logits[..., :-1, :].float().to(logits.device), targets)
        teacher_log_probs = F.log_softmax(teacher / temperature, dim=-1)
    student_log_probs = F.log_softmax(logits / temperature, dim=-1)
    kl = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1)
    kl = (kl * mask).sum() / denominator
    return ce + weight * kl


def build_loss(config: LSSDConfig, model, dtype: torch.dtype, zero_stage: int = 0):
    """A ``compute_loss_func`` for HF Trainer from the recipe's ``loss.lssd`` config, or
    None when it is disabled."""
    if not config.enabled:
        return None
    return LSSDLoss(config, model, dtype, zero_stage)


class LSSDLoss:
    """The compute_loss_func: keeps the student's latest inputs, runs the teacher."""

    def __init__(self, config: LSSDConfig, model, dtype: torch.dtype, zero_stage: int):
        self.config = config
        self.inputs: dict = {}
        self.teacher = None
        if config.teacher == "frozen":
            teacher = copy.deepcopy(model).to(dtype=dtype)
            if zero_stage == 3:
                teacher = teacher.to("cpu")
            teacher.eval().requires_grad_(False)
            self.teacher = teacher
        model.register_forward_pre_hook(self._keep_inputs, with_kwargs=True)

    def _keep_inputs(self, module, args, kwargs):
        self.inputs = {k: kwargs[k] for k in ("input_ids", "attention_mask") if k in kwargs}
        if "input_ids" not in self.inputs and args:
            self.inputs["input_ids"] = args[0]

    def teacher_logits(self, outputs) -> torch.Tensor:
        """Logits of the teacher for the batch the student just saw."""
        if self.teacher is None:
            return outputs.logits.detach()
        with torch.no_grad():
            device = next(self.teacher.parameters()).device
            inputs = {k: v.to(device) for k, v in self.inputs.items()}
            return self.teacher(**inputs).logits

    def __call__(self, outputs, labels, num_items_in_batch=None):
        """LSSD loss of one batch."""
        return lssd_loss(outputs.logits, self.teacher_logits(outputs), labels, self.config.weight,
                         self.config.temperature, num_items_in_batch)
