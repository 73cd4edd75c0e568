"""Distributed plumbing kept outside the models: torchrun detection, process group, DDP / FSDP2.

`torchrun --nproc_per_node=N -m videomae2 ...` sets RANK / WORLD_SIZE / LOCAL_RANK; without them
everything runs as a single process and no process group is created. Backend: nccl on CUDA, gloo
on CPU. FSDP2 shards each transformer block and then the root (`fully_shard`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU when CUDA is available, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if requested == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")


def init_distributed(device: str = "auto") -> DistEnv:
    """Read the torchrun environment and join the process group (a no-op for one process)."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
    return DistEnv(rank, world, local_rank, dev)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of `value` over ranks (a copy; `value` itself is unchanged)."""
    out = value.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def rank_print(env: DistEnv, *args, **kwargs) -> None:
    """`print` on rank 0 only (flushed, so interleaved torchrun output stays readable)."""
    if env.is_main:
        print(*args, **kwargs, flush=True)


def wrap_ddp(model: nn.Module, env: DistEnv) -> nn.Module:
    """DistributedDataParallel on the model's device (identity for one process)."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def apply_fsdp(model: nn.Module, env: DistEnv, block_type: type[nn.Module]) -> nn.Module:
    """FSDP2: `fully_shard` every `block_type` module, then the root. Works in place."""
    import warnings

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # The prediction is a view of the head's matmul; FSDP2 warns in case a caller modifies it in
    # place. pretrain_loss never does, so the warning (twice per process) is noise here.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(env.device.type, (env.world_size,))
    for module in model.modules():
        if isinstance(module, block_type):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under DDP / torch.compile wrappers (FSDP2 shards in place: no wrapper)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model
