"""Data-parallel evaluation of an in-memory model across the ranks of a training job.

Under ZeRO stages 0-2 every rank holds the whole model, so the ranks can split the
documents: lm-eval's ``evaluate`` already shards each task's documents by ``lm.rank`` /
``lm.world_size`` and gathers the per-document results to rank 0 through the LM's
``all_gather`` / ``gather_object`` / ``barrier``. lm-eval's HFLM reports a single
process for a model passed in memory; this subclass reports the training job's
``torch.distributed`` group instead and implements the three primitives on it (gloo on
CPU, NCCL on GPUs). Rank 0 receives exactly the per-document values a single process
would compute, so every aggregate is the same.
"""

from __future__ import annotations

from lm_eval.models.huggingface import HFLM


def distributed_world() -> tuple[int, int] | None:
    """``(rank, world size)`` of an initialised ``torch.distributed`` group of more than
    one process, else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.get_rank(), dist.get_world_size()


class DataParallelHFLM(HFLM):
    """HFLM over an in-memory model, one shard of the documents per rank."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        world = distributed_world()
        if world is None:
            raise RuntimeError("data-parallel evaluation needs an initialised torch.distributed group of 2+ ranks")
        self._rank, self._world_size = world

    def all_gather(self, tensor):
        """Every rank's tensor, concatenated (scalars stacked) in rank order."""
        import torch
        import torch.distributed as dist

        parts = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts) if tensor.dim() == 0 else torch.cat(parts)

    def barrier(self) -> None:
        """Wait for every rank."""
        import torch.distributed as dist

        dist.barrier()
