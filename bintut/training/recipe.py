"""The recipe notebook 02 teaches: the model a config builds, the schedules evaluated at training
progress t, the loss, batch mixing, one optimisation step and the float32 evaluation.

The loop (:mod:`bintut.training.loop`) only ever calls :meth:`Recipe.apply`, which calls
:func:`bintut.quant.set_controls`; how a layer quantizes is the quantizers' business.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms import v2

from bintut.config import SCHEDULE_FIELDS, TrainConfig
from bintut.data.choice import num_classes
from bintut.files.checkpoint import CheckpointError, load_checkpoint
from bintut.files.run_folder import CHECKPOINT
from bintut.model import resnet18_cifar
from bintut.quant import binarize_, hard_mode, set_controls


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The training autocast dtype: 'auto' is fp16 on a GPU (the reference, with a GradScaler), off on a CPU."""
    if amp == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def seed_everything(*parts: int) -> None:
    """Seed torch, numpy and random from a tuple of ints, e.g. (seed,) at set-up and (seed, epoch, rank) per
    epoch: every rank and epoch gets its own stream, which a resumed run recreates."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def build_model(cfg: TrainConfig) -> nn.Module:
    """ResNet18-CIFAR converted for gradual binarization, controls at 0.

    With ``cfg.init_from`` the weights (quantizer state included) come from that run's checkpoint:
    raises FileNotFoundError when that run has no checkpoint, CheckpointError (prefixed ``init_from:``)
    when it cannot be read, ValueError when it holds a model of another layout.
    """
    pretrained = cfg.pretrained and cfg.init_from is None
    model = resnet18_cifar(num_classes(cfg.data), pretrained=pretrained, progress=cfg.progress, weights=cfg.weights)
    model = binarize_(model, cfg.quant_config())
    if cfg.init_from is not None:
        source = Path(cfg.init_from) / CHECKPOINT
        if not source.is_file():
            raise FileNotFoundError(f"init_from: no checkpoint at {source}")
        try:
            model.load_state_dict(load_checkpoint(source)["model"])
        except CheckpointError as err:
            raise CheckpointError(f"init_from: {err}") from err
        except (RuntimeError, TypeError, AttributeError) as err:
            reason = str(err).strip().splitlines()[0]
            raise ValueError(f"init_from: {source} holds a model of another layout ({reason})") from err
    return model


@dataclass
class Recipe:
    """The config's schedules evaluated at training progress t."""

    cfg: TrainConfig

    def __post_init__(self) -> None:
        self.schedules = {name: self.cfg.schedule(name) for name in SCHEDULE_FIELDS}

    def at(self, t: float) -> dict[str, float]:
        s = {name: sched(t) for name, sched in self.schedules.items()}
        values = {"lr": s["lr"]}
        if self.cfg.quant_weights:
            values |= {"weights.p": s["weight_p"], "weights.bin_ratio": s["weight_ratio"]}
        if self.cfg.quant_activations:
            values |= {"activations.p": s["act_p"], "activations.bin_ratio": s["act_ratio"]}
        return values

    @staticmethod
    def apply(values: dict[str, float], model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        if optimizer is not None:
            for group in optimizer.param_groups:
                group["lr"] = values["lr"]
        for target in ("weights", "activations"):
            if f"{target}.p" in values:
                set_controls(model, values[f"{target}.p"], values[f"{target}.bin_ratio"], target=target)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, resumable mid-epoch, sharded across ranks.

    ``keep``: only the permutation's first ``keep`` entries (``drop_last``: whole global batches only).
    """

    def __init__(
        self, n: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1, keep: int | None = None
    ) -> None:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.indices = torch.randperm(n, generator=g)[:keep][start:][rank::world].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def mixer(cfg: TrainConfig) -> v2.Transform | None:
    """Mixup or cutmix on whole batches, chosen 50/50; None if mixing is off.

    ``mix_draw='reference'``: as the reference, one coin picks the Beta parameter (mixup_alpha or
    cutmix_alpha) and an independent coin the operation -- four equally likely pairs, so each
    operation gets either alpha half the time. ``'independent'``: mixup always draws from
    Beta(mixup_alpha), cutmix from Beta(cutmix_alpha).
    """
    if cfg.mix_prob == 0:
        return None
    if cfg.mix_draw == "reference":
        alphas = (cfg.mixup_alpha, cfg.cutmix_alpha)
        pairs = [(op, alpha) for op in (v2.MixUp, v2.CutMix) for alpha in alphas]
    else:
        pairs = [(v2.MixUp, cfg.mixup_alpha), (v2.CutMix, cfg.cutmix_alpha)]
    return v2.RandomChoice([op(alpha=alpha, num_classes=num_classes(cfg.data)) for op, alpha in pairs])


def loss_fn(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy; soft (mixed) targets get label smoothing, as in the reference.
    ``logits`` (B, classes); ``target`` (B,) int64 class indices or (B, classes) float soft labels; returns
    the 0-d mean loss (float32). Taught in notebooks/02_baseline.ipynb."""
    if target.is_floating_point():
        return F.cross_entropy(logits.float(), target, label_smoothing=smoothing)
    return F.cross_entropy(logits.float(), target)


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    """Optimizer steps per epoch over n training images; ``drop_last`` counts whole batches only.

    Raises ValueError when ``drop_last`` leaves no step (fewer images than one batch).
    """
    if drop_last and n < batch_size:
        raise ValueError(f"drop_last: {n} training images make no whole batch of {batch_size}; "
                         "lower --batch-size or use --no-drop-last")
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, x: torch.Tensor,
    y: torch.Tensor, cfg: TrainConfig, dtype: torch.dtype | None, mix: v2.Transform | None,
) -> torch.Tensor:
    """One optimisation step on a device batch (``x`` normalised float (B, 3, H, W), ``y`` (B,) int64);
    returns the detached 0-d loss (no host sync). Taught in notebooks/02_baseline.ipynb."""
    if mix is not None and torch.rand(()) < cfg.mix_prob:
        x, y = mix(x, y)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        loss = loss_fn(model(x), y, cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """cuDNN convolutions in IEEE float32 for the duration, not TF32 (PyTorch's default for them on a GPU)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        saved, conv.fp32_precision = conv.fp32_precision, "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = saved
    else:
        saved, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = saved


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, hard: bool = False,
             channels_last: bool = False, pad: bool = False) -> dict[str, float]:
    """Top-1 accuracy and mean loss; ``hard=True`` evaluates the deployable p = bin_ratio = 1 view.

    Always in float32 -- no autocast, no TF32 -- whatever the training used: the hard accuracy is then
    the accuracy of the integer network that ``export`` writes (a small share of the epoch's time).
    Under torch.distributed the counts are summed across ranks, so each test image counts once.
    ``pad=True`` (for a compiled model: one graph) fills a smaller last batch up to the first batch's
    size with copies of its own images and scores only the real ones -- the same results, since in
    eval mode every image's logits depend on that image alone (BatchNorm and the activation
    quantizers use their running statistics; an activation quantizer never trained uses the batch's
    max|x|, which copies leave unchanged).
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, device=device, dtype=torch.float64)  # correct, loss sum, count
    size = None  # the first batch's size, which a padded last batch is filled up to
    with hard_mode(model) if hard else contextlib.nullcontext(), ieee_float32():
        for x, y in loader:
            x, y = to_device(x, y, device, channels_last)
            size = size or len(x)
            if pad and len(x) < size:
                fill = torch.arange(size, device=x.device) % len(x)
                logits = model(x[fill].float().contiguous(memory_format=memory_format_for(channels_last)))[: len(x)]
            else:
                logits = model(x.float())
            totals[0] += (logits.argmax(1) == y).sum()
            totals[1] += F.cross_entropy(logits.float(), y, reduction="sum")
            totals[2] += y.numel()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    correct, loss, count = totals.tolist()
    return {"acc": correct / max(count, 1), "loss": loss / max(count, 1), "count": int(count)}


def memory_format_for(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch (images (B, 3, H, W), labels (B,)) moved to ``device`` without waiting, the images channels
    last in memory when asked (the shape stays (B, 3, H, W))."""
    memory_format = memory_format_for(channels_last)
    return x.to(device, non_blocking=True, memory_format=memory_format), y.to(device, non_blocking=True)
