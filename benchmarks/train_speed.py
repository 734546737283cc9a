"""Benchmark: training throughput of a reference-style pipeline against bintut's fast path, one run.

    python benchmarks/train_speed.py                # on a GPU: the numbers for docs/fast_training.md
    python benchmarks/train_speed.py --tiny         # on a CPU, in minutes: checks that every part runs
    python benchmarks/train_speed.py --device cpu --images 1024 --steps 2 --warmup 1 --no-compile --epochs 0

Same model (binarizing ResNet18-CIFAR), same card, synthetic data of CIFAR-100's shape (50,000 uint8
images): the data's content does not change the speed.
  (a) reference-style: PIL augmentation per image, DataLoader with 2 workers, batch 128, eager, bf16;
  (b) bintut fast path: data resident on the GPU, batched augmentation, batch 512, channels_last,
      bf16, torch.compile (with --no-compile: eager);
each in the binarizing phase (p = bin_ratio = 0.5) and, for (b), in full precision (p = bin_ratio = 0) as
well, to show what binarizing costs. Prints a Markdown table with images/s and seconds per epoch.

Then whole epochs (``--epochs``, 0 skips them): the ``seed`` and the ``fast`` preset as ``python -m bintut
train`` runs them -- the same functions, :func:`bintut.training.loop.open_session`, ``train_epoch``,
``evaluate_epoch`` (hard, soft and any further evaluation it holds) and ``finish_epoch`` (checkpoint,
metrics row) -- on the same synthetic images plus ``--test-images``, in the binarizing phase
(p = bin_ratio = 0.5 throughout). Each epoch's wall time is split into training, evaluation and
book-keeping; the first epoch of a compiled run includes its compilations, which are listed with
their seconds (dynamo's compile callbacks) -- more than two (training and evaluation graphs) means a
recompile (rerun with TORCH_LOGS=recompiles to see why).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from bintut.config import preset
from bintut.data.device import DeviceBatches
from bintut.data.images import ImageSet
from bintut.data.transforms import train_transform
from bintut.quant import set_controls
from bintut.training.devices import compile_model
from bintut.training.guard import StopRequest
from bintut.training.loop import evaluate_epoch, finish_epoch, open_session, train_epoch
from bintut.training.recipe import autocast_dtype, build_model, mixer, train_step

EPOCH = 50_000


class PILDataset(Dataset):
    """The reference's way: a PIL image per sample through the augmentation, in worker processes."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        tensor_steps = train_transform("reference").transforms
        geometric_and_colour = tensor_steps[:-2]  # crop ... grayscale work on PIL images too
        self.transform = v2.Compose([*geometric_and_colour, v2.ToImage(), *tensor_steps[-2:]])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def measure(step, batches, warmup: int, steps: int, batch: int, device: torch.device) -> float:
    """Images per second over `steps` steps after `warmup` untimed ones."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


class CompileLog:
    """Every dynamo compilation while it is open: (id, trigger, wall s, CPU s of this process).

    Uses ``torch._dynamo.callback`` (torch >= 2.5); where that is missing, the log stays empty and says so.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, float, float]] = []
        self._open: dict[str, tuple[float, float]] = {}
        try:
            from torch._dynamo.callback import callback_handler
        except ImportError:
            self.handler = None
            return
        self.handler = callback_handler
        callback_handler.register_start_callback(self._start)
        callback_handler.register_end_callback(self._end)

    @staticmethod
    def _key(args: object) -> str:
        return str(getattr(args, "compile_id", "?"))

    def _start(self, args: object = None) -> None:
        self._open[self._key(args)] = (time.perf_counter(), time.process_time())

    def _end(self, args: object = None) -> None:
        wall, cpu = self._open.pop(self._key(args), (time.perf_counter(), time.process_time()))
        trigger = str(getattr(args, "callback_trigger", "")).rsplit(".", 1)[-1]
        self.entries.append((self._key(args), trigger, time.perf_counter() - wall, time.process_time() - cpu))

    def take(self) -> list[tuple[str, str, float, float]]:
        entries, self.entries = self.entries, []
        return entries


def whole_epochs(name: str, cfg, epochs: int, log: CompileLog) -> list[dict[str, float]]:
    """Wall seconds of each epoch of the run ``cfg`` (training, evaluation, book-keeping), as train() runs it."""
    s, _ = open_session(cfg)
    stop = StopRequest()
    times = []
    try:
        for _ in range(epochs):
            log.take()
            start = time.perf_counter()
            train_seconds = train_epoch(s, stop)  # ends with a host sync (the health check)
            evaluated = time.perf_counter()
            row = evaluate_epoch(s, train_seconds)  # ends with host syncs (.item())
            finished = time.perf_counter()
            finish_epoch(s, row)
            done = time.perf_counter()
            compiles = log.take()
            times.append({"train": evaluated - start, "eval": finished - evaluated, "book": done - finished,
                          "total": done - start, "images": row["train_images_per_s"] * train_seconds,
                          "compiles": compiles})
            print(f"  {name}: epoch {len(times)}/{epochs} {done - start:.2f} s (train {evaluated - start:.2f}, "
                  f"evaluation {finished - evaluated:.2f}, checkpoint + metrics {done - finished:.2f}); "
                  f"{len(compiles)} compilation(s): "
                  + (", ".join(f"{c[0]} {c[1].lower()} {c[2]:.1f} s" for c in compiles) or "none"), flush=True)
    finally:
        if s.lock is not None:
            s.lock.release()
    return times


def epoch_rows(args: argparse.Namespace, device: torch.device, folder: Path, log: CompileLog) -> list[tuple]:
    """Whole epochs of the seed and the fast preset on the benchmark's synthetic sizes."""
    rows = []
    common = dict(data="synthetic", synthetic_train=args.images, synthetic_test=args.test_images,
                  data_root=str(folder / "data"), epochs=args.epochs, pretrained=False, progress=False,
                  wandb="disabled", device=device.type, seed=0,
                  **{k: 0.5 for k in ("weight_p", "weight_ratio", "act_p", "act_ratio")})
    if args.tiny:  # CPU sizes; bf16 autocast is ~8x slower than float32 on a CPU
        sizes = {"seed": dict(batch_size=8, eval_batch_size=12), "fast": dict(batch_size=16, eval_batch_size=12)}
        common["amp"] = "off"
    else:
        sizes = {"seed": {}, "fast": {}}
    for name in args.paths:
        compiled = args.compile and preset(name).compile  # seed: eager, as the reference; fast: compiled
        cfg = preset(name, out=str(folder / name), compile=compiled, **common, **sizes[name])
        times = whole_epochs(name, cfg, args.epochs, log)
        label = (f"`{name}` preset: {cfg.data_path} data, batch {cfg.batch_size}, "
                 f"{'compiled' if cfg.compile else 'eager'}, amp {cfg.amp}, whole epochs")
        rows.append((label, times, cfg))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=EPOCH, help="training images (default: 50,000)")
    parser.add_argument("--test-images", type=int, default=10_000, help="test images of the whole-epoch runs")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--epochs", type=int, default=2, help="whole epochs per preset (0: none)")
    parser.add_argument("--paths", nargs="+", choices=("seed", "fast"), default=["seed", "fast"],
                        help="presets whose whole epochs are timed")
    parser.add_argument("--no-steps", dest="steps_only", action="store_false",
                        help="skip the step-only rows (whole epochs only)")
    parser.add_argument("--tiny", action="store_true",
                        help="CPU check in minutes: 40 training and 16 test images, 2 timed steps after 1, "
                             "batches of 8/16 (the last one partial), amp off")
    args = parser.parse_args()
    if args.tiny:
        args.device, args.images, args.test_images, args.steps, args.warmup = "cpu", 40, 16, 2, 1
    device = torch.device(args.device)
    log = CompileLog()
    if args.steps_only:
        step_rows = step_only_rows(args, device)
        header(args, device)
        print("| pipeline | images/s | s/epoch (50k) | vs reference-style |\n| --- | ---: | ---: | ---: |")
        for name, rate in step_rows:
            print(f"| {name} | {rate:,.0f} | {EPOCH / rate:.2f} | {rate / step_rows[0][1]:.1f}x |")
        print(flush=True)
    if args.epochs:
        with tempfile.TemporaryDirectory(prefix="bintut-epochs-") as folder:
            rows = epoch_rows(args, device, Path(folder), log)
        header(args, device)
        print(f"Whole epochs on {args.images:,} training and {args.test_images:,} test images (p = bin_ratio = 0.5):\n")
        print("| run | epoch | whole epoch s | training s | evaluation s | checkpoint + metrics s | "
              "train images/s | s per 50k-image epoch | compilations (s) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for label, times, _ in rows:
            later = times[1:] or times
            rest = "2" if len(times) == 2 else f"2-{len(times)} (median)"
            groups = [("1", times[:1])] + ([(rest, later)] if len(times) > 1 else [])
            for which, group in groups:
                med = {k: statistics.median(t[k] for t in group) for k in ("total", "train", "eval", "book")}
                rate = statistics.median(t["images"] / t["train"] for t in group)
                compiles = [c for t in group for c in t["compiles"]]
                listed = ", ".join(f"{c[1].lower()} {c[2]:.0f}" for c in compiles) or "none"
                scaled = med["total"] * EPOCH / args.images
                print(f"| {label} | {which} | {med['total']:.2f} | {med['train']:.2f} | {med['eval']:.2f} | "
                      f"{med['book']:.2f} | {rate:,.0f} | {scaled:.2f} | {listed} |")


def header(args: argparse.Namespace, device: torch.device) -> None:
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"\n{datetime.date.today()}, {card}, torch {torch.__version__}, {args.images} synthetic images, "
          f"{args.steps} timed steps after {args.warmup}\n")


def step_only_rows(args: argparse.Namespace, device: torch.device) -> list[tuple[str, float]]:
    """Images per second of the training step alone: reference-style loader, fast path binarizing and fp."""
    rng = np.random.default_rng(0)
    data = ImageSet(rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8),
                    rng.integers(0, 100, args.images), [])
    rows = []

    def setup(batch: int, compile_: bool, channels_last: bool):
        cfg = preset("seed", pretrained=False, batch_size=batch, compile=compile_, device=device.type)
        net = build_model(cfg).to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        model = compile_model(net) if compile_ else net
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        dtype = autocast_dtype("bf16" if device.type == "cuda" else "off", device)
        mix = mixer(cfg)
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def step(x, y):
            x = x.to(device, non_blocking=True, memory_format=fmt)
            train_step(model, optimizer, scaler, x, y.to(device, non_blocking=True), cfg, dtype, mix)

        return net, step

    # (a) reference-style
    ref_batch, fast_batch = (8, 16) if args.tiny else (128, 512)
    net, step = setup(ref_batch, compile_=False, channels_last=False)
    set_controls(net, 0.5, 0.5)
    loader = DataLoader(PILDataset(data.images, data.labels), batch_size=ref_batch, shuffle=True, num_workers=2,
                        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    rows.append((f"reference-style: PIL, 2 workers, batch {ref_batch}, eager, binarizing",
                 measure(step, batches, args.warmup, args.steps, ref_batch, device)))
    # (b) fast path, binarizing then full precision
    device_data = DeviceBatches(data, device, "reference")
    order = torch.randperm(len(device_data))[: len(device_data) // fast_batch * fast_batch]  # whole batches
    for p, label in ((0.5, "binarizing"), (0.0, "full precision")):
        net, step = setup(fast_batch, compile_=args.compile, channels_last=True)
        set_controls(net, p, p)
        batches = itertools.chain.from_iterable(device_data.batches(order, fast_batch) for _ in itertools.count())
        name = (f"bintut fast path: on-device data, batch {fast_batch}, {'compiled' if args.compile else 'eager'}, "
                f"{label}")
        rows.append((name, measure(step, batches, args.warmup, args.steps, fast_batch, device)))
    return rows


if __name__ == "__main__":
    main()
