"""Benchmark: the numpy integer engine against torch fp32 CPU inference, same batch, same machine.

    python benchmarks/int_engine.py [--batch 256] [--repeats 3]

Prints a Markdown table (paste it into docs/benchmarks.md with the date and machine). The model is
a randomly initialised, calibrated, fully binarized ResNet18-CIFAR: speed does not depend on the
weights' values. Measured: images/s of
  * torch fp32, the plain (unquantized) ResNet18-CIFAR -- what a user would otherwise deploy;
  * torch fp32, the bintut model in hard mode (fake-quantized, the same function as the engine);
  * the numpy engine (float32-BLAS path, exact integer accumulators);
  * the teaching add/sub kernel, on one image.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from bintut import binarize_, resnet18_cifar, set_controls
from bintut.engine import IntegerResNet
from bintut.export import export_resnet


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = binarize_(resnet18_cifar(pretrained=False))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 3, 32, 32))  # calibrate int8 ranges and BN statistics
    model.eval()
    set_controls(model, 1.0, 1.0)
    export = export_resnet(model)
    plain = resnet18_cifar(pretrained=False).eval()

    images = torch.randn(args.batch, 3, 32, 32)
    array = images.numpy()
    engine = IntegerResNet(export)
    teaching = IntegerResNet(export, kernel="addsub")
    with torch.no_grad():
        t_plain = best_of(lambda: plain(images), args.repeats)
        t_hard = best_of(lambda: model(images), args.repeats)
    t_engine = best_of(lambda: engine(array), args.repeats)
    t_teach = best_of(lambda: teaching(array[:1]), 1)

    rows = [
        ("torch fp32, plain ResNet18-CIFAR", args.batch / t_plain),
        ("torch fp32, bintut model in hard mode", args.batch / t_hard),
        ("numpy engine (float32 BLAS, exact int accumulators)", args.batch / t_engine),
        ("numpy teaching kernel (literal add/sub), batch 1", 1 / t_teach),
    ]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}")
    print(f"batch {args.batch}, best of {args.repeats}\n")
    print("| path | images/s | vs torch fp32 plain |\n| --- | ---: | ---: |")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate * t_plain / args.batch:.2f}x |")


if __name__ == "__main__":
    main()
