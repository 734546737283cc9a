"""Where a run computes: the device, data held on it or fed by loader processes, ``torch.compile``
and the ranks of ``torchrun`` (one process per GPU).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

from bintut.config import TrainConfig


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available; 'cuda' without a GPU falls back to the CPU with a message."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        print("bintut: device 'cuda' requested but no GPU is visible; using the CPU")
        name = "cpu"
    if name == "cuda" and dist.is_available() and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def use_device_data(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether to hold the data on the device; 'device' without a GPU says so and runs on the CPU."""
    if cfg.data_path == "device" and device.type != "cuda":
        print("bintut: data path 'device' asked for without a GPU: holding the data in CPU memory and "
              "augmenting in batches on the CPU (for speed on a CPU use --data-path loader)")
    return cfg.data_path == "device" or (cfg.data_path == "auto" and device.type == "cuda")


def worker_count(requested: int, device: torch.device) -> int:
    """-1: up to 8 loader processes when a GPU computes; none on a CPU, where they would steal its cores."""
    if requested >= 0:
        return requested
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def compile_backend() -> str:
    """The torch.compile backend: $BINTUT_COMPILE_BACKEND, default 'inductor'.

    'aot_eager' traces and recompiles exactly when inductor would (the guards are dynamo's) but
    generates no code: seconds instead of minutes on a CPU, for tests and for diagnosing recompiles.
    """
    return os.environ.get("BINTUT_COMPILE_BACKEND", "inductor")


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` with static shapes: one graph per input shape, never a dynamic-shape one.

    The training step sees one batch shape (``drop_last``; otherwise a second static graph for the
    epoch's last batch) and evaluation one more (its last batch is padded, see :func:`evaluate`).
    ``dynamic=False`` stops dynamo from turning the batch dimension symbolic when a second shape
    appears: on a 2-core CPU that dynamic recompile took longer than the first compile (176 s against
    109 s, docs/fast_training.md), and it would also cover the evaluation graph.
    """
    return torch.compile(model, backend=compile_backend(), dynamic=False)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def process_group() -> Iterator[int]:
    """Initialise the process group when started by torchrun (WORLD_SIZE > 1); yields the world size."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or dist.is_initialized():
        yield world
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    try:
        yield world
    finally:
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on one (a collective: every rank must call it)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
