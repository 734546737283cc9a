"""The reference training loop: schedules in, metrics, checkpoints and a figure out.

The loop only ever calls :func:`bintut.quant.set_controls`; how a layer quantizes is the
quantizers' business. One run = one output folder holding ``config.json``,
``metrics.jsonl``, ``checkpoint.pt`` and ``results.png``.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms import v2
from tqdm.auto import tqdm

from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from .config import SCHEDULE_FIELDS, TrainConfig
from .data import ImageDataset, ImageSet, data_root, load_cifar100, train_transform, write_synthetic_cifar100
from .device_data import DeviceBatches
from .distributed import any_rank
from .model import resnet18_cifar
from .plots import plot_run
from .quant import QuantConfig, binarize_, hard_mode, set_controls
from .tracking import METRICS, MetricsLog, WandbRun

NUM_CLASSES = 100
FIGURE = "results.png"
# Fields that may differ between a run and its resumption without changing what is computed.
MACHINERY = {"resume", "progress", "num_workers", "wandb", "compile", "out", "device", "data_root", "download"}


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- set-up helpers


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


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def seed_everything(*parts: int) -> None:
    """Seed torch, numpy and random from a tuple (seed, epoch, batch): resumable streams."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def load_data(cfg: TrainConfig) -> tuple[ImageSet, ImageSet]:
    """Train and test sets as the config asks (raises DataNotFoundError with advice)."""
    root = data_root(cfg.data_root)
    if cfg.data == "synthetic":
        root = write_synthetic_cifar100(
            root / f"synthetic-{cfg.synthetic_train}-{cfg.synthetic_test}-{cfg.seed}",
            cfg.synthetic_train, cfg.synthetic_test, cfg.seed,
        )
    train_set = load_cifar100(root, train=True, download=cfg.download)
    test_set = load_cifar100(root, train=False, download=False)
    return train_set.subset(cfg.train_subset, cfg.seed), test_set.subset(cfg.test_subset, cfg.seed + 1)


def build_model(cfg: TrainConfig) -> nn.Module:
    """ResNet18-CIFAR converted for gradual binarization, controls at 0.

    With ``cfg.init_from`` the weights (quantizer state included) come from that run's checkpoint.
    """
    pretrained = cfg.pretrained and cfg.init_from is None
    model = resnet18_cifar(NUM_CLASSES, pretrained=pretrained, progress=cfg.progress)
    quant = QuantConfig(cfg.quant_weights, cfg.quant_activations, cfg.scale, cfg.nested)
    model = binarize_(model, quant)
    if cfg.init_from is not None:
        source = Path(cfg.init_from) / CHECKPOINT
        if not source.is_file():
            raise FileNotFoundError(f"init_from: no checkpoint at {source}")
        try:
            model.load_state_dict(load_checkpoint(source)["model"])
        except RuntimeError as err:
            raise ValueError(f"init_from: {source} holds a model of another layout ({err})") from err
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
    """A seeded permutation per epoch, resumable mid-epoch, sharded across ranks."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.indices = torch.randperm(n, generator=g)[start:][rank::world].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


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


def mixer(cfg: TrainConfig) -> v2.Transform | None:
    """Mixup (alpha 0.2) or cutmix (alpha 0.5), 50/50, on whole batches; None if off."""
    if cfg.mix_prob == 0:
        return None
    return v2.RandomChoice([
        v2.MixUp(alpha=cfg.mixup_alpha, num_classes=NUM_CLASSES),
        v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=NUM_CLASSES),
    ])


def loss_fn(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy; soft (mixed) targets get label smoothing, as in the reference."""
    if target.is_floating_point():
        return F.cross_entropy(logits.float(), target, label_smoothing=smoothing)
    return F.cross_entropy(logits.float(), target)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, x: torch.Tensor,
    y: torch.Tensor, cfg: TrainConfig, dtype: torch.dtype | None, mix: v2.Transform | None,
) -> torch.Tensor:
    """One optimisation step on a device batch; returns the detached loss (no host sync)."""
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


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, dtype: torch.dtype | None = None,
             hard: bool = False, channels_last: bool = False) -> dict[str, float]:
    """Top-1 accuracy and mean loss; ``hard=True`` evaluates the deployable p = bin_ratio = 1 view.

    Under torch.distributed the counts are summed across ranks, so each test image counts once.
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, device=device, dtype=torch.float64)  # correct, loss sum, count
    with hard_mode(model) if hard else contextlib.nullcontext():
        for x, y in loader:
            x, y = _to_device(x, y, device, channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(x)
            totals[0] += (logits.argmax(1) == y).sum()
            totals[1] += F.cross_entropy(logits.float(), y, reduction="sum")
            totals[2] += y.numel()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    correct, loss, count = totals.tolist()
    return {"acc": correct / max(count, 1), "loss": loss / max(count, 1), "count": int(count)}


def _to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(device, non_blocking=True, memory_format=memory_format), y.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- the run


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_resume(cfg: TrainConfig, saved: dict[str, Any]) -> None:
    now = cfg.to_dict()
    changed = [k for k in now if k not in MACHINERY and saved.get(k) != now[k]]
    diff = [f"{k}: run has {saved.get(k)!r}, now {now[k]!r}" for k in changed]
    if diff:
        raise ValueError("cannot resume: the configuration differs from the saved run (" + "; ".join(diff) + ")")


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with the final hard/soft accuracy."""
    rank, world = _distributed()
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if cfg.batch_size % world:
        raise ValueError(
            f"batch_size {cfg.batch_size} does not split across {world} processes; use a multiple of {world}"
        )
    state: dict[str, Any] | None = None
    if ckpt_path.is_file():
        if not cfg.resume:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        state = load_checkpoint(ckpt_path)
        _check_resume(cfg, state["config"])
    elif cfg.resume and rank == 0 and out.exists():
        print(f"bintut: nothing to resume in {out}; starting a new run")
    device = resolve_device(cfg.device)
    dtype = autocast_dtype(cfg.amp, device)
    if rank != 0:
        dist.barrier()  # rank 0 first: it generates or downloads the data once
    train_set, test_set = load_data(cfg)  # fails fast: before the model download, before writing anything
    if rank == 0 and world > 1:
        dist.barrier()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(cfg.to_json())
    seed_everything(cfg.seed)
    net = build_model(cfg).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.schedule("lr")(0.0), weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    epoch, batch_done, global_step = 0, 0, 0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        epoch, batch_done, global_step = state["epoch"], state["batch"], state["global_step"]
        if rank == 0:
            print(f"bintut: resuming {out} at epoch {epoch + 1}, batch {batch_done}")
    model: nn.Module = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)

    per_rank_batch = cfg.batch_size // world
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    recipe = Recipe(cfg)
    mix = mixer(cfg)
    workers = worker_count(cfg.num_workers, device)
    test_shard = list(range(rank, len(test_set), world))  # each test image on exactly one rank
    if use_device_data(cfg, device):
        train_data = DeviceBatches(train_set, device, cfg.augment)
        test_loader = DeviceBatches(test_set, device, None).loader(test_shard, cfg.eval_batch_size)
    else:
        train_data = ImageDataset(train_set, train_transform(cfg.augment))
        test_loader = DataLoader(ImageDataset(test_set), batch_size=cfg.eval_batch_size, sampler=test_shard,
                                 num_workers=min(workers, 2), pin_memory=device.type == "cuda")
    metrics = MetricsLog(out / METRICS, keep_epochs_below=epoch) if rank == 0 else None
    tracker = WandbRun(cfg.wandb, cfg.to_dict(), out, state.get("wandb_id") if state else None) if rank == 0 else None

    def snapshot(epoch_: int, batch_: int) -> dict[str, Any]:
        return {
            "model": net.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch_, "batch": batch_, "global_step": global_step, "config": cfg.to_dict(),
            "wandb_id": tracker.id if tracker else None, "rng": torch.get_rng_state(), "version": 1,
            "epoch_loss_sum": loss_sum.item(), "epoch_seen": seen,
        }

    stop = StopRequest()
    loss_sum, seen = torch.zeros(()), 0
    summary: dict[str, Any] = {}
    try:
        stop.install()
        while epoch < cfg.epochs:
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            seen = 0
            if state is not None and batch_done:  # mid-epoch resume: continue the same streams
                torch.set_rng_state(state["rng"])
                loss_sum += state["epoch_loss_sum"]
                seen = state["epoch_seen"]
            else:
                seed_everything(cfg.seed, epoch, rank)
            state = None
            sampler = EpochSampler(len(train_data), cfg.seed, epoch, batch_done * cfg.batch_size, rank, world)
            if isinstance(train_data, DeviceBatches):
                loader = train_data.batches(sampler.indices, per_rank_batch)
            else:
                loader = DataLoader(
                    train_data, batch_size=per_rank_batch, sampler=sampler, num_workers=workers,
                    pin_memory=device.type == "cuda", drop_last=False,
                    generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch),
                )
            model.train()
            started = time.perf_counter()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       disable=not cfg.progress or rank != 0, initial=batch_done, total=steps_per_epoch)
            for x, y in bar:
                Recipe.apply(recipe.at(global_step / total_steps), net, optimizer)
                x, y = _to_device(x, y, device, cfg.channels_last)
                loss = train_step(model, optimizer, scaler, x, y, cfg, dtype, mix)
                loss_sum += loss * y.shape[0]
                seen += y.shape[0]
                global_step += 1
                batch_done += 1
                if device.type == "cpu":  # on a GPU: no host sync in the loop; checked at epoch end
                    _check_finite(loss_sum, epoch, batch_done, ckpt_path)
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if world == 1:  # under DDP all ranks must stop together: at the epoch's end
                    stop.check()
            bar.close()
            _check_finite(loss_sum, epoch, batch_done, ckpt_path)
            train_seconds = time.perf_counter() - started
            # Soft evaluation uses the controls at the end of this epoch (t = 1 after the last).
            values = recipe.at((epoch + 1) * steps_per_epoch / total_steps)
            Recipe.apply(values, net)
            hard = evaluate(model, test_loader, device, dtype, hard=True, channels_last=cfg.channels_last)
            soft = evaluate(model, test_loader, device, dtype, hard=False, channels_last=cfg.channels_last)
            totals = torch.tensor([loss_sum.item(), seen], dtype=torch.float64, device=device)
            if world > 1:
                dist.all_reduce(totals)
            row = {
                "epoch": epoch + 1, "t": (epoch + 1) / cfg.epochs, "step": global_step, **values,
                "train_loss": totals[0].item() / max(totals[1].item(), 1),
                "hard_acc": hard["acc"], "soft_acc": soft["acc"], "hard_loss": hard["loss"],
                "soft_loss": soft["loss"], "test_images": hard["count"],
                "epoch_seconds": train_seconds, "train_images_per_s": totals[1].item() / train_seconds,
            }
            if rank == 0:
                metrics.append(row)
                tracker.log(row, step=global_step)
                save_checkpoint(ckpt_path, snapshot(epoch + 1, 0))
                if cfg.progress:
                    print(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.3f}  "
                          f"hard {100 * hard['acc']:.2f}%  soft {100 * soft['acc']:.2f}%  ({train_seconds:.1f} s)")
            # Only now is the epoch done: an interrupt before this line redoes its evaluation.
            epoch, batch_done = epoch + 1, 0
            stop.check(device)
        summary = {"epochs": epoch, "out": str(out)}
        if rank == 0:
            from .tracking import read_metrics

            rows = read_metrics(out / METRICS)
            if rows:
                summary |= {"hard_acc": rows[-1]["hard_acc"], "soft_acc": rows[-1]["soft_acc"]}
                plot_run(rows, out / FIGURE)
    except KeyboardInterrupt:
        if rank == 0 and stop.at_boundary:
            save_checkpoint(ckpt_path, snapshot(epoch, batch_done))
            print(f"\nbintut: stopped; checkpoint saved at epoch {epoch + 1}, batch {batch_done}. "
                  f"Continue with --resume --out {out}")
        elif rank == 0:
            print(f"\nbintut: stopped at once; the last epoch checkpoint in {out} is kept")
        raise
    finally:
        stop.uninstall()
        if tracker is not None:
            tracker.finish()
    return summary


class StopRequest:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (a second one stops at once).

    Stopping at a boundary means the checkpoint written on the way out is consistent: the
    model, optimizer, counters and RNG state all belong to the same completed step.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at_boundary = False
        self.previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {signum} again")
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
        """Raise KeyboardInterrupt if a stop was asked for; with a device, agreed across ranks."""
        asked = self.signum is not None
        if device is not None:
            asked = any_rank(asked, device)
        if asked:
            self.at_boundary = True
            raise KeyboardInterrupt(f"signal {self.signum}")


def _check_finite(loss_sum: torch.Tensor, epoch: int, batch: int, ckpt_path: Path) -> None:
    if not torch.isfinite(loss_sum):
        kept = f"the last good checkpoint is {ckpt_path}" if ckpt_path.is_file() else "no checkpoint was written yet"
        raise Diverged(
            f"training diverged: the loss became {loss_sum.item()} by epoch {epoch + 1}, batch {batch}; "
            f"{kept}. Try a lower learning rate or a slower binarization schedule."
        )
