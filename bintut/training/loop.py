"""The run machinery: set-up, epochs, evaluation and book-keeping of one run in its folder.

One run = one output folder (:mod:`bintut.files.run_folder`) holding ``config.json``,
``metrics.jsonl``, ``checkpoint.pt`` and ``results.png``. :func:`train` opens a session, then per
epoch trains, evaluates (hard, soft and deployed accuracy) and writes the checkpoint and the
metrics row.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm.auto import tqdm

from bintut.config import TrainConfig
from bintut.data.choice import data_words, load_data
from bintut.data.device import DeviceBatches
from bintut.data.images import ImageSet
from bintut.data.transforms import ImageDataset, train_transform
from bintut.files.atomic import replacing
from bintut.files.checkpoint import CheckpointError, finished, save_checkpoint
from bintut.files.lock import RunLock
from bintut.files.metrics import MetricsLog, read_metrics
from bintut.files.run_folder import CHECKPOINT, CONFIG, FIGURE, METRICS
from bintut.integer.torch_engine import deployed_accuracy
from bintut.training.devices import compile_model, rank_and_world, resolve_device, use_device_data, worker_count
from bintut.training.guard import StopRequest, check_health, loss_scale, syncs_every_step
from bintut.training.plots import plot_run
from bintut.training.recipe import (
    EpochSampler,
    Recipe,
    autocast_dtype,
    build_model,
    evaluate,
    mixer,
    seed_everything,
    steps_per_epoch,
    to_device,
    train_step,
)
from bintut.training.resume import lock_folder, repair_finished, resume_state
from bintut.training.tracking import WandbRun


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
    skipped: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
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
            "epoch_skipped": int(self.skipped.item()),
        }

    def check_health(self, weights: bool = True) -> None:
        """:func:`bintut.training.guard.check_health` on this run's loss so far and (``weights``) its model."""
        check_health(self.loss_sum, self.net, self.ckpt_path, f"epoch {self.epoch + 1}, batch {self.batch_done}",
                     weights)

    def save(self) -> None:
        """Write the checkpoint -- only after :func:`check_health` passes, on every device, for every write."""
        self.check_health()
        save_checkpoint(self.ckpt_path, self.snapshot())


def open_session(
    cfg: TrainConfig, load: Callable[[TrainConfig], tuple[ImageSet, ImageSet]] = load_data,
) -> tuple[Session | None, dict[str, Any] | None]:
    """Set-up: lock the folder, check it against the config, load data, build the model and optimizer.

    Returns the session (counters restored from the checkpoint when resuming) and that checkpoint;
    for a run that has already completed all ``cfg.epochs``, None and its checkpoint (nothing loaded; its last
    metrics row and results.png repaired if a crash at its end left them missing or torn).
    Nothing is written before every check and every load has passed: on a failure the lock is
    released and a folder this call created is removed again.

    ``load`` reads the data (:func:`bintut.data.choice.load_data`; a test passes a substitute).

    Raises ValueError when ``cfg.batch_size`` does not split across the processes (naming both); the
    folder, resume, data and model checks raise theirs (RunFolderError, FileExistsError, DataNotFoundError ...).
    """
    rank, world = rank_and_world()
    if cfg.batch_size % world:
        raise ValueError(
            f"batch_size {cfg.batch_size} does not split across {world} processes; use a multiple of {world}"
        )
    device = resolve_device(cfg.device)
    lock = lock_folder(Path(cfg.out), rank, device)
    try:
        state = resume_state(cfg, Path(cfg.out), rank, created=bool(lock and lock.created))
        if state is not None and finished(state, cfg.epochs):
            if lock is not None:  # rank 0, holding the folder: repair what a crash after the last checkpoint left
                repair_finished(cfg, Path(cfg.out), state)
                lock.release()
            return None, state
        return _set_up(cfg, rank, world, device, lock, state, load)
    except BaseException:
        if lock is not None:
            lock.release(remove_created=True)
        raise


def _set_up(
    cfg: TrainConfig, rank: int, world: int, device: torch.device, lock: RunLock | None,
    state: dict[str, Any] | None, load: Callable[[TrainConfig], tuple[ImageSet, ImageSet]] = load_data,
) -> tuple[Session, dict[str, Any] | None]:
    out = Path(cfg.out)
    if rank != 0:
        dist.barrier()  # rank 0 first: it generates or downloads the data once
    train_set, test_set = load(cfg)  # fails fast: before the model download
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
        try:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise CheckpointError(f"{out / CHECKPOINT} holds a model of another layout ({reason}); it cannot be "
                                  "resumed: choose another --out") from None
    model: nn.Module = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = compile_model(model)
    workers = worker_count(cfg.num_workers, device)
    train_data, test_loader = _data_sources(cfg, device, train_set, test_set, workers, rank, world)
    steps = steps_per_epoch(len(train_set), cfg.batch_size, cfg.drop_last)
    s = Session(cfg, out, rank, world, device, dtype, net, model, optimizer, scaler, train_data, test_loader,
                Recipe(cfg), mixer(cfg), workers, steps, cfg.epochs * steps, lock)
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
    sampler = EpochSampler(len(s.train_data), cfg.seed, s.epoch, s.batch_done * cfg.batch_size, s.rank, s.world,
                           keep=s.steps_per_epoch * cfg.batch_size)
    per_rank_batch = cfg.batch_size // s.world
    if isinstance(s.train_data, DeviceBatches):
        return s.train_data.batches(sampler.indices, per_rank_batch)
    return iter(DataLoader(
        s.train_data, batch_size=per_rank_batch, sampler=sampler, num_workers=s.workers,
        pin_memory=s.device.type == "cuda", drop_last=False,
        generator=torch.Generator().manual_seed(cfg.seed * 7919 + s.epoch),
    ))


def train_epoch(
    s: Session, stop: StopRequest, resumed: dict[str, Any] | None = None,
    step: Callable[..., torch.Tensor] = train_step, synced: Callable[[torch.device], bool] = syncs_every_step,
) -> float:
    """One epoch of optimisation steps (the rest of it, after a mid-epoch resume); returns its seconds.

    ``step`` is :func:`bintut.training.recipe.train_step` and ``synced`` :func:`bintut.training.guard.syncs_every_step`
    unless a test passes substitutes (a step that corrupts the weights; the GPU's no-sync path on a CPU).
    """
    cfg = s.cfg
    s.loss_sum = torch.zeros((), device=s.device, dtype=torch.float64)
    s.seen = 0
    s.skipped = torch.zeros((), device=s.device, dtype=torch.int64)
    if resumed is not None and s.batch_done:  # mid-epoch resume: continue the same streams
        torch.set_rng_state(resumed["rng"])
        s.loss_sum += resumed["epoch_loss_sum"]
        s.seen = resumed["epoch_seen"]
        s.skipped += resumed.get("epoch_skipped", 0)
    else:
        seed_everything(cfg.seed, s.epoch, s.rank)
    s.model.train()
    started = time.perf_counter()
    bar = tqdm(_epoch_batches(s), desc=f"epoch {s.epoch + 1}/{cfg.epochs}", leave=False,
               disable=not cfg.progress or s.rank != 0, initial=s.batch_done, total=s.steps_per_epoch)
    for x, y in bar:
        Recipe.apply(s.recipe.at(s.global_step / s.total_steps), s.net, s.optimizer)
        x, y = to_device(x, y, s.device, cfg.channels_last)
        scale = loss_scale(s.scaler, s.device)
        loss = step(s.model, s.optimizer, s.scaler, x, y, cfg, s.dtype, s.mix)
        if scale is not None:  # the GradScaler lowers its scale exactly when it skips a step (inf/NaN grads)
            s.skipped += (loss_scale(s.scaler, s.device) < scale).to(torch.int64)
        s.loss_sum += loss * y.shape[0]
        s.seen += y.shape[0]
        s.global_step += 1
        s.batch_done += 1
        if synced(s.device):  # on a GPU: no host sync in the loop; checked at epoch end and on save
            s.check_health(weights=False)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if s.world == 1:  # under DDP all ranks must stop together: at the epoch's end
            stop.check()
    bar.close()
    s.check_health()
    return time.perf_counter() - started


def evaluate_epoch(s: Session, train_seconds: float) -> dict[str, Any]:
    """The epoch's metrics row: hard and soft test accuracy (float32), deployed accuracy (the integer-only
    network exported from the current weights, bintut.integer.torch_engine; None while it cannot be exported),
    the controls, loss and speed."""
    # Soft evaluation uses the controls at the end of this epoch (t = 1 after the last).
    values = s.recipe.at((s.epoch + 1) * s.steps_per_epoch / s.total_steps)
    Recipe.apply(values, s.net)
    hard = evaluate(s.model, s.test_loader, s.device, hard=True, channels_last=s.cfg.channels_last, pad=s.cfg.compile)
    soft = evaluate(s.model, s.test_loader, s.device, hard=False, channels_last=s.cfg.channels_last, pad=s.cfg.compile)
    deployed = deployed_accuracy(s.net, s.test_loader, s.device)  # not compiled: runs on the module itself
    if deployed["acc"] is None and s.rank == 0:
        print(f"bintut: no deployed accuracy this epoch: {deployed['why']}")
    totals = torch.tensor([s.loss_sum.item(), s.seen], dtype=torch.float64, device=s.device)
    if s.world > 1:
        dist.all_reduce(totals)
    return {
        "epoch": s.epoch + 1, "t": (s.epoch + 1) / s.cfg.epochs, "step": s.global_step, **values,
        "train_loss": totals[0].item() / max(totals[1].item(), 1),
        "hard_acc": hard["acc"], "soft_acc": soft["acc"], "deployed_acc": deployed["acc"], "hard_loss": hard["loss"],
        "soft_loss": soft["loss"], "test_images": hard["count"],
        "epoch_seconds": train_seconds, "train_images_per_s": totals[1].item() / train_seconds,
        "deployed_seconds": deployed["seconds"],
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
    print(f"epoch {row['epoch']}/{s.cfg.epochs}: loss {row['train_loss']:.3f}  "
              f"hard {100 * row['hard_acc']:.2f}%  soft {100 * row['soft_acc']:.2f}%  "
              f"deployed {_percent(row.get('deployed_acc'))}  "
              f"({row['epoch_seconds']:.1f} s)")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


FINAL_KEYS = ("hard_acc", "soft_acc", "deployed_acc")  # what a run's summary reports of its last epoch


def _summary(s: Session, plot: Callable[..., Any] = plot_run) -> dict[str, Any]:
    summary: dict[str, Any] = {"epochs": s.epoch, "out": str(s.out)}
    if s.rank == 0:
        rows = read_metrics(s.out / METRICS)
        if rows:
            summary |= {k: rows[-1].get(k) for k in FINAL_KEYS}
            with replacing(s.out / FIGURE) as tmp:
                plot(rows, tmp, data=data_words(s.cfg))
    return summary


def _finished_summary(cfg: TrainConfig, state: dict[str, Any]) -> dict[str, Any]:
    """The summary of a run that completed all its epochs before this call (which trains nothing)."""
    out = Path(cfg.out)
    summary: dict[str, Any] = {"epochs": state["epoch"], "out": str(out), "already_finished": True}
    if rank_and_world()[0] == 0:
        print(f"bintut: {out} has already finished its {state['epoch']} epochs; nothing to train "
              "(choose another --out, or delete the folder, to train again)")
        # the checkpoint's row, as Run.final: metrics.jsonl lags it after a crash between the two writes
        last = state.get("last_row") or next(reversed(read_metrics(out / METRICS)), None)
        if last:
            summary |= {k: last.get(k) for k in FINAL_KEYS}
    return summary


def train(
    cfg: TrainConfig, *, load: Callable[[TrainConfig], tuple[ImageSet, ImageSet]] = load_data,
    step: Callable[..., torch.Tensor] = train_step, synced: Callable[[torch.device], bool] = syncs_every_step,
    plot: Callable[..., Any] = plot_run,
) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with the final hard/soft accuracy.

    The steps, in order: :func:`open_session` (set-up), then per epoch :func:`train_epoch`,
    :func:`evaluate_epoch` and :func:`finish_epoch`. The run holds its folder's lock throughout.
    Ctrl-C/SIGTERM stops at a step boundary and writes a checkpoint that ``--resume`` continues
    exactly -- unless the run has diverged meanwhile, then it raises :class:`Diverged` and keeps
    the last good checkpoint.

    ``load``, ``step``, ``synced`` and ``plot`` are seams for tests (the data loader, the optimisation step, whether
    the loss is read every step, the results figure); the defaults are the library's own functions.
    """
    s, resumed = open_session(cfg, load)
    if s is None:  # finished before: rerunning (make smoke twice) trains nothing
        return _finished_summary(cfg, resumed)
    stop = StopRequest()
    try:
        stop.install()
        while s.epoch < cfg.epochs:
            seconds = train_epoch(s, stop, resumed, step, synced)
            resumed = None
            finish_epoch(s, evaluate_epoch(s, seconds) | {"skipped_steps": int(s.skipped.item())})
            # Only after finish_epoch is the epoch done: an interrupt before it redoes its evaluation.
            stop.check(s.device)
        return _summary(s, plot)
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
