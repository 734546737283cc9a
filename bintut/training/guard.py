"""What stops a run: a signal (SIGINT/SIGTERM stop at the next step boundary, so the checkpoint
written on the way out is consistent) or divergence (a non-finite loss, a non-finite or exploded
weight: the last good checkpoint is kept).
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bintut.errors import BintutError
from bintut.training.devices import any_rank

WEIGHT_LIMIT = 1e4  # a parameter beyond this magnitude has exploded (trained ResNet18 weights stay below ~10)


class Diverged(RuntimeError, BintutError):
    """The loss or the weights became NaN, infinite or huge; the last good checkpoint is kept."""


class Stopped(KeyboardInterrupt):
    """Training stopped on a signal; ``signum`` says which (the CLI exits with 128 + signum)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"signal {signum}")
        self.signum = signum


class StopRequest:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (a second one stops at once).

    Stopping at a boundary means the checkpoint written on the way out is consistent: the
    model, optimizer, counters and RNG state all belong to the same completed step. The second signal
    raises Stopped at once, from the handler.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at_boundary = False
        self.previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise Stopped(signum, f"signal {signum} again")
        self.signum = signum
        print(f"\nbintut: signal {signum} received; stopping after this step (send it again to stop at once)")

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self) for s in self.SIGNALS}

    def uninstall(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def check(self, device: torch.device | None = None) -> None:
        """Raise Stopped (a KeyboardInterrupt carrying the signal) if a stop was asked for; with a device, agreed
        across ranks."""
        asked = self.signum is not None
        if device is not None:
            asked = any_rank(asked, device)
        if asked:
            self.at_boundary = True
            raise Stopped(self.signum if self.signum is not None else signal.SIGINT)


def loss_scale(scaler: torch.amp.GradScaler, device: torch.device) -> torch.Tensor | None:
    """The GradScaler's current scale as a 0-d float32 device tensor (no host sync), None when no scaler is
    in use."""
    if not scaler.is_enabled():
        return None
    scale = getattr(scaler, "_scale", None)  # a tensor once the first step ran, None before
    if scale is None:
        return torch.tensor(scaler.get_scale(), device=device)
    return scale.clone()


def syncs_every_step(device: torch.device) -> bool:
    """Whether the loop may read the loss on the host every step (on a CPU it costs nothing)."""
    return device.type == "cpu"


def check_health(loss_sum: torch.Tensor, net: nn.Module, checkpoint: Path, where: str, weights: bool = True) -> None:
    """Raise :class:`Diverged` if the epoch's loss so far (``loss_sum``, a 0-d tensor) -- or, with ``weights``,
    any weight or buffer of ``net`` -- is not finite, or a weight has exploded past ``WEIGHT_LIMIT``.

    ``where`` ("epoch 3, batch 10") and ``checkpoint`` (the last good one, if written) go into the message.
    One host sync; the loop calls it before every checkpoint write (:meth:`bintut.training.loop.Session.save`).
    """
    problem = None
    if not torch.isfinite(loss_sum):
        problem = f"the loss became {loss_sum.item()}"
    elif weights:
        problem = _weights_problem(net)
    if problem is None:
        return
    kept = f"the last good checkpoint is {checkpoint}" if checkpoint.is_file() else "no checkpoint was written yet"
    raise Diverged(
        f"training diverged: {problem} by {where}; {kept}. "
        "Try a lower learning rate or a slower binarization schedule."
    )


@torch.no_grad()
def _weights_problem(net: nn.Module) -> str | None:
    tensors = [(n, t, True) for n, t in net.named_parameters()]
    tensors += [(n, t, False) for n, t in net.named_buffers() if t.is_floating_point()]
    tensors = [(n, t, is_param) for n, t, is_param in tensors if t.numel()]
    if not tensors:
        return None
    peaks = torch.stack([t.detach().abs().amax().float() for _, t, _ in tensors]).tolist()
    for (name, _, is_param), peak in zip(tensors, peaks, strict=True):
        if not math.isfinite(peak):
            return f"{name} became non-finite"
        if is_param and peak > WEIGHT_LIMIT:
            return f"{name} exploded (|w| up to {peak:.3g}, beyond {WEIGHT_LIMIT:g})"
    return None
