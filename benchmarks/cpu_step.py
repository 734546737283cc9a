"""Benchmark: the training step on a CPU, plain ResNet18-CIFAR against the binarizing one, in one process.

    python benchmarks/cpu_step.py                       # batch 64, 7 rounds: the figures of docs/fast_training.md
    python benchmarks/cpu_step.py --batch 8 --rounds 2  # a check that everything runs (seconds)

One optimisation step (forward, loss, backward, grad-norm clip, AdamW) as :func:`bintut.training.recipe.train_step`
runs it, float32, channels_last, random images of CIFAR's shape (the content does not change the speed). Paths:
the plain model (no quantizer at all) and the converted model with both quantizers at p = bin_ratio = 0, 0.5
and 1, and (``--composed``, the "before" of docs/fast_training.md) the same at 0.5 with the quantizers' composed
expression of ``GradualQuantizer.forward`` in eager mode, as bintut ran it before :mod:`bintut.fused_quant`.
The paths take turns, one step each per round, so that a change of load on a shared machine hits all of
them alike; each path's figure is the median over the rounds of wall and CPU seconds per step. The ratio
"vs plain" divides a path's median seconds by the plain path's (1.00x = no cost; the goal of issue 23 is
<= 1.3x).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time

import torch

from bintut.config import preset
from bintut.model import resnet18_cifar
from bintut.quant import GradualQuantizer, binarize_, quantizers, set_controls
from bintut.training.recipe import train_step


def cpu_model() -> str:
    """lscpu's model name (else platform.processor())."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.SubprocessError, StopIteration):
        return platform.processor() or "unknown CPU"


def composed(net: torch.nn.Module) -> None:
    """Every quantizer of ``net`` runs the composed expression (the eager path before bintut.fused_quant)."""
    for q in quantizers(net):
        q.forward = (lambda x, q=q: GradualQuantizer.forward(q, x.float())) if q.role == "activations" else (
            lambda w, q=q: GradualQuantizer.forward(q, w))


def make_step(controls: float | None, batch: int, fused: bool = True):
    """A closure running one training step of a fresh model: plain (controls None) or binarizing at p = r."""
    torch.manual_seed(0)
    net = resnet18_cifar(100, pretrained=False)
    if controls is not None:
        net = binarize_(net)
        set_controls(net, controls, controls)
        if not fused:
            composed(net)
    net = net.to(memory_format=torch.channels_last).train()
    cfg = preset("seed", pretrained=False, mix_prob=0.0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,))

    def step() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        train_step(net, optimizer, scaler, x, y, cfg, None, None).item()
        return time.perf_counter() - wall, time.process_time() - cpu

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7, help="timed steps per path (after one untimed)")
    parser.add_argument("--controls", type=float, nargs="+", default=[0.0, 0.5, 1.0],
                        help="p = bin_ratio values of the binarizing paths")
    parser.add_argument("--composed", action="store_true",
                        help="add the composed expression at p = bin_ratio = 0.5 (before the fused functions)")
    args = parser.parse_args()
    paths = {"plain (no quantizers)": make_step(None, args.batch)}
    paths |= {f"binarizing, p = bin_ratio = {c:g}": make_step(c, args.batch) for c in args.controls}
    if args.composed:
        paths["binarizing, p = bin_ratio = 0.5, composed (before)"] = make_step(0.5, args.batch, fused=False)
    for step in paths.values():  # warm-up: allocator, oneDNN primitives
        step()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, step in paths.items():
            times[name].append(step())
    load = os.getloadavg()
    print(f"\n{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}, batch {args.batch}, {args.rounds} rounds; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| path | s/step (wall, median) | images/s (wall) | CPU s/step (median) | vs plain (wall) | vs plain (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base_wall = statistics.median(t[0] for t in times["plain (no quantizers)"])
    base_cpu = statistics.median(t[1] for t in times["plain (no quantizers)"])
    for name, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        print(f"| {name} | {wall:.3f} | {args.batch / wall:.1f} | {cpu:.3f} | {wall / base_wall:.2f}x | "
              f"{cpu / base_cpu:.2f}x |")


if __name__ == "__main__":
    main()
