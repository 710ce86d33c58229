"""Where training runs: the device, and the process's place in a DistributedDataParallel job (``torchrun``:
NCCL on GPUs, Gloo on CPUs)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from asr.core.errors import AsrError, ConfigError
from asr.train.config import TrainConfig


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is visible; use device=auto or cpu")
    return torch.device(name)


def setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """Rank, world size and device; joins the process group under torchrun.

    Raises:
        AsrError: more processes on this node than visible GPUs.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(cfg.device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise AsrError(
                f"process {local} of {world} has no GPU of its own: {torch.cuda.device_count()} visible; "
                "set train.nproc to at most the number of GPUs, or train.device=cpu"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cudnn.enabled = True  # cuDNN RNN kernels
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    threads = cfg.threads or (max(1, (os.cpu_count() or 1) // world) if world > 1 else 0)
    if threads:
        torch.set_num_threads(threads)
    return (dist.get_rank() if world > 1 else 0), world, device


def broadcast(values: list[float], device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return t.tolist()
