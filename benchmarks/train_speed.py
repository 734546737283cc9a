"""Benchmark: training throughput of a reference-style pipeline against bintut's fast path, one run.

    python benchmarks/train_speed.py                # on a GPU: the numbers for docs/fast_training.md
    python benchmarks/train_speed.py --device cpu --images 1024 --steps 2 --warmup 1 --no-compile  # smoke

Same model (binarizing ResNet18-CIFAR), same card, synthetic data of CIFAR-100's shape (50,000 uint8
images): the data's content does not change the speed.
  (a) reference-style: PIL augmentation per image, DataLoader with 2 workers, batch 128, eager, bf16;
  (b) bintut fast path: data resident on the GPU, batched augmentation, batch 512, channels_last,
      bf16, torch.compile (with --no-compile: eager);
each in the binarizing phase (p = bin_ratio = 0.5) and, for (b), in full precision (p = bin_ratio = 0) as
well, to show what binarizing costs. Prints a Markdown table with images/s and seconds per epoch.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from bintut.config import preset
from bintut.data import ImageSet, train_transform
from bintut.device_data import DeviceBatches
from bintut.quant import set_controls
from bintut.train import autocast_dtype, build_model, mixer, train_step

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=EPOCH)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    data = ImageSet(rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8),
                    rng.integers(0, 100, args.images), [])
    rows = []

    def setup(batch: int, compile_: bool, channels_last: bool):
        cfg = preset("seed", pretrained=False, batch_size=batch, compile=compile_, device=device.type)
        net = build_model(cfg).to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        model = torch.compile(net) if compile_ else net
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        dtype = autocast_dtype("bf16" if device.type == "cuda" else "off", device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def step(x, y):
            x = x.to(device, non_blocking=True, memory_format=fmt)
            train_step(model, optimizer, scaler, x, y.to(device, non_blocking=True), cfg, dtype, mixer(cfg))

        return net, step

    # (a) reference-style
    net, step = setup(128, compile_=False, channels_last=False)
    set_controls(net, 0.5, 0.5)
    loader = DataLoader(PILDataset(data.images, data.labels), batch_size=128, shuffle=True, num_workers=2,
                        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    rows.append(("reference-style: PIL, 2 workers, batch 128, eager, binarizing",
                 measure(step, batches, args.warmup, args.steps, 128, device)))
    # (b) fast path, binarizing then full precision
    device_data = DeviceBatches(data, device, "reference")
    order = torch.randperm(len(device_data))
    for p, label in ((0.5, "binarizing"), (0.0, "full precision")):
        net, step = setup(512, compile_=args.compile, channels_last=True)
        set_controls(net, p, p)
        batches = itertools.chain.from_iterable(device_data.batches(order, 512) for _ in itertools.count())
        name = f"bintut fast path: on-device data, batch 512, {'compiled' if args.compile else 'eager'}, {label}"
        rows.append((name, measure(step, batches, args.warmup, args.steps, 512, device)))

    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"{datetime.date.today()}, {card}, torch {torch.__version__}, {args.images} synthetic images, "
          f"{args.steps} timed steps after {args.warmup}\n")
    print("| pipeline | images/s | s/epoch (50k) | vs reference-style |\n| --- | ---: | ---: | ---: |")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {EPOCH / rate:.2f} | {rate / rows[0][1]:.1f}x |")


if __name__ == "__main__":
    main()
