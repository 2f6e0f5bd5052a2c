"""Single process or DistributedDataParallel under torchrun, with one code path."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from latentwire.shared.models.loading import pick_device


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process logs, evaluates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> Runtime:
    """Join the process group when torchrun started us (it sets RANK), else run alone."""
    if "RANK" not in os.environ:
        return Runtime(0, 1, pick_device(device))
    chosen = pick_device(device)
    dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    return Runtime(dist.get_rank(), dist.get_world_size(), chosen)


def teardown(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()
