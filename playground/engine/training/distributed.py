"""torchrun support: join the process group that torchrun describes in the environment."""

from __future__ import annotations

import os

import torch


def init_from_env(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, this rank's device). Without torchrun: (0, 1, device) and nothing
    else happens. gloo on CPU, NCCL on CUDA (one GPU per local rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def shutdown(clean: bool = True) -> None:
    """Leave the process group; after a normal finish wait for every rank first, so rank 0
    does not take its store down while another rank still talks to it."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()
