"""The reference training loop: schedules in, metrics, checkpoints and a figure out.

The loop only ever calls :func:`bintut.quant.set_controls`; how a layer quantizes is the
quantizers' business. One run = one output folder holding ``config.json``,
``metrics.jsonl``, ``checkpoint.pt`` and ``results.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
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

from .checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from .config import SCHEDULE_FIELDS, TrainConfig
from .data import ImageDataset, ImageSet, data_root, load_images, num_classes, train_transform, write_synthetic_cifar100
from .device_data import DeviceBatches
from .distributed import any_rank
from .model import resnet18_cifar
from .plots import plot_run
from .quant import QuantConfig, binarize_, hard_mode, set_controls
from .runfolder import RunFolderError, RunLock, folder_contents, replacing
from .tracking import METRICS, MetricsLog, WandbRun, read_metrics

FIGURE = "results.png"
CONFIG = "config.json"
RESULTS = (METRICS, FIGURE, "model_int.npz")  # what a finished run holds (export writes model_int.npz)
RUN_FILES = {CONFIG, CHECKPOINT, "wandb", *RESULTS}  # what a run folder may hold; anything else is not ours
RESUME_KEYS = ("model", "optimizer", "scaler", "epoch", "batch", "global_step", "config", "rng")
WEIGHT_LIMIT = 1e4  # a parameter beyond this magnitude has exploded (trained ResNet18 weights stay below ~10)
# Fields that may differ between a run and its resumption without changing what is computed.
MACHINERY = {"resume", "progress", "num_workers", "wandb", "compile", "out", "device", "data_root", "download"}


class Diverged(RuntimeError):
    """The loss or the weights became NaN, infinite or huge; the last good checkpoint is kept."""


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
    """The training autocast dtype: 'auto' is fp16 on a GPU (the reference, with a GradScaler), off on a CPU."""
    if amp == "auto":
        return torch.float16 if device.type == "cuda" else None
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
    train_set = load_images(cfg.data, root, train=True, download=cfg.download, progress=cfg.progress)
    test_set = load_images(cfg.data, root, train=False)
    return train_set.subset(cfg.train_subset, cfg.seed), test_set.subset(cfg.test_subset, cfg.seed + 1)


def build_model(cfg: TrainConfig) -> nn.Module:
    """ResNet18-CIFAR converted for gradual binarization, controls at 0.

    With ``cfg.init_from`` the weights (quantizer state included) come from that run's checkpoint.
    """
    pretrained = cfg.pretrained and cfg.init_from is None
    model = resnet18_cifar(num_classes(cfg.data), pretrained=pretrained, progress=cfg.progress, weights=cfg.weights)
    quant = QuantConfig(cfg.quant_weights, cfg.quant_activations, cfg.scale, cfg.nested, scale_init=cfg.scale_init)
    model = binarize_(model, quant)
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
             channels_last: bool = False) -> dict[str, float]:
    """Top-1 accuracy and mean loss; ``hard=True`` evaluates the deployable p = bin_ratio = 1 view.

    Always in float32 -- no autocast, no TF32 -- whatever the training used: the hard accuracy is then
    the accuracy of the integer network that ``export`` writes (a small share of the epoch's time).
    Under torch.distributed the counts are summed across ranks, so each test image counts once.
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, device=device, dtype=torch.float64)  # correct, loss sum, count
    with hard_mode(model) if hard else contextlib.nullcontext(), ieee_float32():
        for x, y in loader:
            x, y = _to_device(x, y, device, channels_last)
            logits = model(x.float())
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


@dataclass
class Session:
    """What a run holds while it trains: set up by :func:`open_session`, advanced epoch by epoch."""

    cfg: TrainConfig
    out: Path
    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype | None
    net: nn.Module  # the model itself: its state_dict is what checkpoints hold
    model: nn.Module  # what runs the batches: net, or net wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_data: ImageDataset | DeviceBatches
    test_loader: Any
    recipe: Recipe
    mix: v2.Transform | None
    workers: int
    steps_per_epoch: int
    total_steps: int
    lock: RunLock | None = None  # rank 0's exclusive lock on the run folder
    metrics: MetricsLog | None = None
    tracker: WandbRun | None = None
    epoch: int = 0  # epochs completed
    batch_done: int = 0  # batches completed in the current epoch
    global_step: int = 0
    loss_sum: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(()))
    seen: int = 0  # training images of the current epoch
    last_row: dict[str, Any] | None = None  # metrics of the last completed epoch

    @property
    def ckpt_path(self) -> Path:
        return self.out / CHECKPOINT

    def snapshot(self) -> dict[str, Any]:
        """Everything --resume needs to continue after the last completed step."""
        return {
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": self.epoch, "batch": self.batch_done,
            "global_step": self.global_step, "config": self.cfg.to_dict(),
            "wandb_id": self.tracker.id if self.tracker else None, "rng": torch.get_rng_state(), "version": 1,
            "epoch_loss_sum": self.loss_sum.item(), "epoch_seen": self.seen, "last_row": self.last_row,
        }

    def save(self) -> None:
        """Write the checkpoint -- only after :func:`check_health` passes, on every device, for every write."""
        check_health(self)
        save_checkpoint(self.ckpt_path, self.snapshot())


def _resume_state(cfg: TrainConfig, out: Path, rank: int, created: bool = False) -> dict[str, Any] | None:
    """The checkpoint to continue from, None for a new run; refuses a folder whose files a run would clobber."""
    names = folder_contents(out)
    if CHECKPOINT in names:
        if not cfg.resume:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        state = load_checkpoint(out / CHECKPOINT, required=RESUME_KEYS)
        _check_resume(cfg, state["config"])
        return state
    results = [n for n in names if n in RESULTS and not _empty_metrics(out / n)]
    if results:
        raise FileExistsError(f"{out} holds results ({', '.join(results)}) but no {CHECKPOINT} to continue from; a "
                              "new run there would overwrite them: move them away or choose another --out")
    foreign = [n for n in names if n not in RUN_FILES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(f"{out} is not empty and holds no bintut run (it holds {shown}); "
                              "choose an empty or new folder for --out")
    if CONFIG in names:  # a run that stopped before its first checkpoint: the same recipe may start over
        _check_resume(cfg, _read_config(out / CONFIG))
    if names and rank == 0:
        print(f"bintut: {out} holds a run that completed no epoch; starting it over")
    elif cfg.resume and rank == 0 and not created:
        print(f"bintut: nothing to resume in {out}; starting a new run")
    return None


def _empty_metrics(path: Path) -> bool:
    return path.name == METRICS and not read_metrics(path)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a run configuration ({err}); move it away or choose another --out") from err
    if not isinstance(saved, dict):
        raise ValueError(f"{path} is not a run configuration; move it away or choose another --out")
    return saved


def _lock_folder(out: Path, rank: int, device: torch.device) -> RunLock | None:
    """Rank 0 takes the run folder's lock (a second process on the folder stops here); all ranks agree."""
    lock, error = (RunLock(out), None) if rank == 0 else (None, None)
    if lock is not None:
        try:
            lock.acquire()
        except RunFolderError as err:
            error = err
    if any_rank(error is not None, device):
        raise error or RunFolderError(f"rank 0 could not lock {out}")
    return lock


def open_session(cfg: TrainConfig) -> tuple[Session, dict[str, Any] | None]:
    """Set-up: lock the folder, check it against the config, load data, build the model and optimizer.

    Returns the session (counters restored from the checkpoint when resuming) and that checkpoint.
    Nothing is written before every check and every load has passed: on a failure the lock is
    released and a folder this call created is removed again.
    """
    rank, world = _distributed()
    if cfg.batch_size % world:
        raise ValueError(
            f"batch_size {cfg.batch_size} does not split across {world} processes; use a multiple of {world}"
        )
    device = resolve_device(cfg.device)
    lock = _lock_folder(Path(cfg.out), rank, device)
    try:
        return _set_up(cfg, rank, world, device, lock)
    except BaseException:
        if lock is not None:
            lock.release(remove_created=True)
        raise


def _set_up(
    cfg: TrainConfig, rank: int, world: int, device: torch.device, lock: RunLock | None
) -> tuple[Session, dict[str, Any] | None]:
    out = Path(cfg.out)
    state = _resume_state(cfg, out, rank, created=bool(lock and lock.created))
    if rank != 0:
        dist.barrier()  # rank 0 first: it generates or downloads the data once
    train_set, test_set = load_data(cfg)  # fails fast: before the model download
    if rank == 0 and world > 1:
        dist.barrier()
    seed_everything(cfg.seed)
    net = build_model(cfg).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.schedule("lr")(0.0), weight_decay=cfg.weight_decay)
    dtype = autocast_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
    model: nn.Module = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    workers = worker_count(cfg.num_workers, device)
    train_data, test_loader = _data_sources(cfg, device, train_set, test_set, workers, rank, world)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    s = Session(cfg, out, rank, world, device, dtype, net, model, optimizer, scaler, train_data, test_loader,
                Recipe(cfg), mixer(cfg), workers, steps_per_epoch, cfg.epochs * steps_per_epoch, lock)
    if state is not None:
        s.epoch, s.batch_done, s.global_step = state["epoch"], state["batch"], state["global_step"]
        s.last_row = state.get("last_row")
        if rank == 0:
            print(f"bintut: resuming {out} at epoch {s.epoch + 1}, batch {s.batch_done}")
    if rank == 0:  # the first writes of the run
        if state is None:
            with replacing(out / CONFIG) as tmp:
                tmp.write_text(cfg.to_json())
        s.metrics = MetricsLog(out / METRICS, epochs_done=s.epoch, last_row=s.last_row)
        s.tracker = WandbRun(cfg.wandb, cfg.to_dict(), out, state.get("wandb_id") if state else None)
    return s, state


def _data_sources(
    cfg: TrainConfig, device: torch.device, train_set: ImageSet, test_set: ImageSet, workers: int, rank: int,
    world: int,
) -> tuple[ImageDataset | DeviceBatches, Any]:
    """The training data (per-image dataset or device-resident batches) and the test batches of this rank."""
    test_shard = list(range(rank, len(test_set), world))  # each test image on exactly one rank
    if use_device_data(cfg, device):
        train_data = DeviceBatches(train_set, device, cfg.augment)
        return train_data, DeviceBatches(test_set, device, None).loader(test_shard, cfg.eval_batch_size)
    test_loader = DataLoader(ImageDataset(test_set), batch_size=cfg.eval_batch_size, sampler=test_shard,
                             num_workers=min(workers, 2), pin_memory=device.type == "cuda")
    return ImageDataset(train_set, train_transform(cfg.augment, train_set.mean, train_set.std)), test_loader


def _epoch_batches(s: Session) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This epoch's training batches from where it stands (a seeded order, resumable mid-epoch)."""
    cfg = s.cfg
    sampler = EpochSampler(len(s.train_data), cfg.seed, s.epoch, s.batch_done * cfg.batch_size, s.rank, s.world)
    per_rank_batch = cfg.batch_size // s.world
    if isinstance(s.train_data, DeviceBatches):
        return s.train_data.batches(sampler.indices, per_rank_batch)
    return iter(DataLoader(
        s.train_data, batch_size=per_rank_batch, sampler=sampler, num_workers=s.workers,
        pin_memory=s.device.type == "cuda", drop_last=False,
        generator=torch.Generator().manual_seed(cfg.seed * 7919 + s.epoch),
    ))


def train_epoch(s: Session, stop: StopRequest, resumed: dict[str, Any] | None = None) -> float:
    """One epoch of optimisation steps (the rest of it, after a mid-epoch resume); returns its seconds."""
    cfg = s.cfg
    s.loss_sum = torch.zeros((), device=s.device, dtype=torch.float64)
    s.seen = 0
    if resumed is not None and s.batch_done:  # mid-epoch resume: continue the same streams
        torch.set_rng_state(resumed["rng"])
        s.loss_sum += resumed["epoch_loss_sum"]
        s.seen = resumed["epoch_seen"]
    else:
        seed_everything(cfg.seed, s.epoch, s.rank)
    s.model.train()
    started = time.perf_counter()
    bar = tqdm(_epoch_batches(s), desc=f"epoch {s.epoch + 1}/{cfg.epochs}", leave=False,
               disable=not cfg.progress or s.rank != 0, initial=s.batch_done, total=s.steps_per_epoch)
    for x, y in bar:
        Recipe.apply(s.recipe.at(s.global_step / s.total_steps), s.net, s.optimizer)
        x, y = _to_device(x, y, s.device, cfg.channels_last)
        loss = train_step(s.model, s.optimizer, s.scaler, x, y, cfg, s.dtype, s.mix)
        s.loss_sum += loss * y.shape[0]
        s.seen += y.shape[0]
        s.global_step += 1
        s.batch_done += 1
        if _syncs_every_step(s.device):  # on a GPU: no host sync in the loop; checked at epoch end and on save
            check_health(s, weights=False)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if s.world == 1:  # under DDP all ranks must stop together: at the epoch's end
            stop.check()
    bar.close()
    check_health(s)
    return time.perf_counter() - started


def evaluate_epoch(s: Session, train_seconds: float) -> dict[str, Any]:
    """The epoch's metrics row: hard and soft test accuracy (float32), the controls, loss and speed."""
    # Soft evaluation uses the controls at the end of this epoch (t = 1 after the last).
    values = s.recipe.at((s.epoch + 1) * s.steps_per_epoch / s.total_steps)
    Recipe.apply(values, s.net)
    hard = evaluate(s.model, s.test_loader, s.device, hard=True, channels_last=s.cfg.channels_last)
    soft = evaluate(s.model, s.test_loader, s.device, hard=False, channels_last=s.cfg.channels_last)
    totals = torch.tensor([s.loss_sum.item(), s.seen], dtype=torch.float64, device=s.device)
    if s.world > 1:
        dist.all_reduce(totals)
    return {
        "epoch": s.epoch + 1, "t": (s.epoch + 1) / s.cfg.epochs, "step": s.global_step, **values,
        "train_loss": totals[0].item() / max(totals[1].item(), 1),
        "hard_acc": hard["acc"], "soft_acc": soft["acc"], "hard_loss": hard["loss"],
        "soft_loss": soft["loss"], "test_images": hard["count"],
        "epoch_seconds": train_seconds, "train_images_per_s": totals[1].item() / train_seconds,
    }


def finish_epoch(s: Session, row: dict[str, Any]) -> None:
    """The epoch counts as done; on rank 0 the book-keeping: checkpoint (carrying the row), metrics row, wandb.

    The checkpoint comes first: a crash after it loses no row (the resumed run appends the row
    the checkpoint carries), a crash before it leaves the folder as the previous epoch left it.
    """
    s.epoch, s.batch_done, s.last_row = s.epoch + 1, 0, row
    if s.rank != 0:
        return
    s.save()
    s.metrics.append(row)
    s.tracker.log(row, step=s.global_step)
    if s.cfg.progress:
        print(f"epoch {row['epoch']}/{s.cfg.epochs}: loss {row['train_loss']:.3f}  "
              f"hard {100 * row['hard_acc']:.2f}%  soft {100 * row['soft_acc']:.2f}%  "
              f"({row['epoch_seconds']:.1f} s)")


def _summary(s: Session) -> dict[str, Any]:
    summary: dict[str, Any] = {"epochs": s.epoch, "out": str(s.out)}
    if s.rank == 0:
        rows = read_metrics(s.out / METRICS)
        if rows:
            summary |= {"hard_acc": rows[-1]["hard_acc"], "soft_acc": rows[-1]["soft_acc"]}
            with replacing(s.out / FIGURE) as tmp:
                plot_run(rows, tmp)
    return summary


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with the final hard/soft accuracy.

    The steps, in order: :func:`open_session` (set-up), then per epoch :func:`train_epoch`,
    :func:`evaluate_epoch` and :func:`finish_epoch`. The run holds its folder's lock throughout.
    Ctrl-C/SIGTERM stops at a step boundary and writes a checkpoint that ``--resume`` continues
    exactly -- unless the run has diverged meanwhile, then it raises :class:`Diverged` and keeps
    the last good checkpoint.
    """
    s, resumed = open_session(cfg)
    stop = StopRequest()
    try:
        stop.install()
        while s.epoch < cfg.epochs:
            seconds = train_epoch(s, stop, resumed)
            resumed = None
            finish_epoch(s, evaluate_epoch(s, seconds))
            # Only after finish_epoch is the epoch done: an interrupt before it redoes its evaluation.
            stop.check(s.device)
        return _summary(s)
    except KeyboardInterrupt:
        if s.rank == 0 and stop.at_boundary:
            s.save()
            print(f"\nbintut: stopped; checkpoint saved at epoch {s.epoch + 1}, batch {s.batch_done}. "
                  f"Continue with --resume --out {s.out}")
        elif s.rank == 0:
            print(f"\nbintut: stopped at once; the last epoch checkpoint in {s.out} is kept")
        raise
    finally:
        stop.uninstall()
        if s.tracker is not None:
            s.tracker.finish()
        if s.lock is not None:
            s.lock.release()


class Stopped(KeyboardInterrupt):
    """Training stopped on a signal; ``signum`` says which (the CLI exits with 128 + signum)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"signal {signum}")
        self.signum = signum


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
        """Raise KeyboardInterrupt if a stop was asked for; with a device, agreed across ranks."""
        asked = self.signum is not None
        if device is not None:
            asked = any_rank(asked, device)
        if asked:
            self.at_boundary = True
            raise Stopped(self.signum if self.signum is not None else signal.SIGINT)


def _syncs_every_step(device: torch.device) -> bool:
    """Whether the loop may read the loss on the host every step (on a CPU it costs nothing)."""
    return device.type == "cpu"


def check_health(s: Session, weights: bool = True) -> None:
    """Raise :class:`Diverged` if the epoch's loss so far -- or any weight or buffer -- is not finite, or a
    weight has exploded past ``WEIGHT_LIMIT``. One host sync; called before every checkpoint write."""
    problem = None
    if not torch.isfinite(s.loss_sum):
        problem = f"the loss became {s.loss_sum.item()}"
    elif weights:
        problem = _weights_problem(s.net)
    if problem is None:
        return
    kept = (f"the last good checkpoint is {s.ckpt_path}" if s.ckpt_path.is_file()
            else "no checkpoint was written yet")
    raise Diverged(
        f"training diverged: {problem} by epoch {s.epoch + 1}, batch {s.batch_done}; {kept}. "
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
