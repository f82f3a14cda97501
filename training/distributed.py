"""Data-parallel plumbing: process group set-up from torchrun's environment, index sharding, reductions.

``torchrun --nproc-per-node N -m training ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and opens a process group with ``gloo`` on CPU
and ``nccl`` on CUDA. Without them the run is a single process (world size 1) and every helper here is a
no-op, so the training loop has one code path.

Sharding follows ``torch.utils.data.DistributedSampler``: one permutation of the epoch's window indices,
seeded by (seed, epoch) so every rank computes the same one, padded to a multiple of the world size, and
rank ``r`` takes positions ``r, r + W, r + 2W, ...``. Ranks therefore see disjoint indices and the same
number of batches (no rank waits forever in an all-reduce).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main rank writes files and logs progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank / world size from torchrun's environment variables (single process when absent)."""
    world = int(os.environ.get(ENV_WORLD_SIZE, "1"))
    rank = int(os.environ.get(ENV_RANK, "0"))
    local = int(os.environ.get(ENV_LOCAL_RANK, str(rank)))
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def setup(info: DistInfo, device: torch.device) -> None:
    """Open the default process group when ``info.world_size > 1`` (env:// rendezvous)."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    logger.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)


def cleanup() -> None:
    """Close the process group if one is open."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(num_items: int, info: DistInfo, seed: int, epoch: int) -> list[int]:
    """This rank's share of a (seed, epoch)-shuffled permutation of ``range(num_items)``."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_items, generator=gen).tolist()
    per_rank = -(-num_items // info.world_size)  # ceil
    padded = order + order[: per_rank * info.world_size - num_items]
    return padded[info.rank :: info.world_size]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over ranks (identity on a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)  # [K]
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def barrier() -> None:
    """Wait for every rank (no-op on a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
