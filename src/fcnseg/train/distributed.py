"""Processes of a ``torchrun`` launch: which one this is, its device, and the few collectives.

``torchrun --nproc_per_node N`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` for each
process; without them the run is one process and every collective here is the identity.
Gradients are averaged by ``DistributedDataParallel``; this module only adds the sums and
gathers the training loop needs besides (loss, confusion matrix, RNG states).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fcnseg.runtime import resolve_device

logger = logging.getLogger(__name__)


@dataclass
class Processes:
    """This process's place in the launch and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started_group: bool = False  # whether setup() created the process group (and ends it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, logs progress and shows the bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_rank() -> int:
    """This process's rank from the launcher's environment (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str) -> Processes:
    """Join the launch's process group (gloo on CPU, NCCL on CUDA) if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    processes = Processes(launched_rank(), world_size, local_rank)
    processes.device = resolve_device(device, local_rank)
    if processes.device.type == "cuda":
        torch.cuda.set_device(processes.device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if processes.device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        processes.started_group = True
        logger.info("rank %d of %d joined (%s)", processes.rank, world_size, backend)
    return processes


def teardown(processes: Processes) -> None:
    if processes.started_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, processes: Processes) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place (identity in a single process)."""
    if processes.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_process(flag: bool, processes: Processes) -> bool:
    """Whether ``flag`` is set in any process (every process must call this)."""
    if not processes.distributed:
        return flag
    value = torch.tensor([float(flag)], device=processes.device)
    return all_reduce_sum(value, processes).item() > 0


def gather(value: Any, processes: Processes) -> list[Any]:
    """Every process's ``value``, in rank order (``[value]`` in a single process)."""
    if not processes.distributed:
        return [value]
    values: list[Any] = [None] * processes.world_size
    dist.all_gather_object(values, value)
    return values


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()
