"""Logit-swap self-distillation: the swap, the KL, the loss, the teacher's gradients."""

from __future__ import annotations

import pytest
import torch

from ecomharness.train.lssd import IGNORE, LSSDConfig, build_loss, lssd_loss, swap_gold_to_top


def test_swap_puts_gold_first_and_keeps_the_multiset():
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 50)
    targets = torch.randint(0, 50, (4, 7))
    targets[0, 0] = IGNORE
    swapped = swap_gold_to_top(logits, targets)
    valid = targets != IGNORE
    assert torch.equal(swapped.argmax(-1)[valid], targets[valid])
    assert torch.equal(torch.sort(swapped, dim=-1).values, torch.sort(logits, dim=-1).values)
    assert torch.equal(swapped[0, 0], logits[0, 0])  # ignored position untouched
    # where gold already is the top-1, nothing changes
    top = logits.argmax(-1)
    same = swap_gold_to_top(logits, top)
    assert torch.equal(same, logits)


def test_swap_by_hand():
    logits = torch.tensor([[[1.0, 5.0, 2.0, 3.0]]])
    assert swap_gold_to_top(logits, torch.tensor([[2]])).tolist() == [[[1.0, 2.0, 5.0, 3.0]]]


def _batch(seed=0, vocab=30):
    torch.manual_seed(seed)
    logits = torch.randn(2, 6, vocab)
    labels = torch.randint(0, vocab, (2, 6))
    labels[1, 4:] = IGNORE
    return logits, labels


def test_weight_zero_equals_plain_cross_entropy():
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(1)
    model = BloomForCausalLM(BloomConfig(vocab_size=40, hidden_size=16, n_layer=1, n_head=2))
    ids = torch.randint(0, 40, (2, 8))
    labels = ids.clone()
    labels[0, 5:] = IGNORE
    outputs = model(input_ids=ids, labels=labels)
    ours = lssd_loss(outputs.logits, outputs.logits, labels, weight=0.0, temperature=2.0)
    assert abs(ours.item() - outputs.loss.item()) < 1e-6


def test_kl_is_zero_for_equal_teacher_and_student():
    logits, labels = _batch()
    # a teacher whose top-1 already is gold everywhere needs no swap: equal logits -> KL 0
    logits = logits.clone()
    targets = labels[:, 1:]
    valid = targets != IGNORE
    rows = logits[:, :-1, :]
    rows[valid] = rows[valid].scatter(-1, targets[valid].unsqueeze(-1), 100.0)
    ce = lssd_loss(logits, logits, labels, weight=0.0, temperature=1.5)
    both = lssd_loss(logits, logits.clone(), labels, weight=3.0, temperature=1.5)
    assert abs(both.item() - ce.item()) < 1e-6


def test_kl_term_is_positive_when_they_differ_and_grows_with_weight():
    student, labels = _batch(0)
    teacher, _ = _batch(1)
    base = lssd_loss(student, teacher, labels, 0.0, 1.0).item()
    one = lssd_loss(student, teacher, labels, 1.0, 1.0).item()
    two = lssd_loss(student, teacher, labels, 2.0, 1.0).item()
    assert one > base and two - base == pytest.approx(2 * (one - base), rel=1e-5)


def test_no_gradient_reaches_the_teacher():
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(2)
    student = BloomForCausalLM(BloomConfig(vocab_size=40, hidden_size=16, n_layer=1, n_head=2))
    loss_fn = build_loss(LSSDConfig(enabled=True, weight=1.0, temperature=2.0, teacher="frozen"), student, torch.float32)
    teacher = loss_fn.teacher
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    ids = torch.randint(0, 40, (2, 8))
    outputs = student(input_ids=ids, attention_mask=torch.ones_like(ids))
    loss = loss_fn(outputs, ids.clone())
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    # the teacher saw the same inputs as the student, and did not change
    before = [p.clone() for p in teacher.parameters()]
    torch.optim.SGD(student.parameters(), lr=1.0).step()
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))


def test_self_teacher_needs_no_copy():
    from transformers import BloomConfig, BloomForCausalLM

    student = BloomForCausalLM(BloomConfig(vocab_size=40, hidden_size=16, n_layer=1, n_head=2))
    loss_fn = build_loss(LSSDConfig(enabled=True, teacher="self"), student, torch.float32)
    assert loss_fn.teacher is None
    assert build_loss(LSSDConfig(enabled=False), student, torch.float32) is None
