"""Benchmark: the numpy integer engine (and the exported C library) against torch fp32 CPU inference.

    python benchmarks/int_engine.py [--batch 256] [--repeats 3] [--c]
    python benchmarks/int_engine.py --run RUN_FOLDER [--images 1000] [--synthetic-images N]

Prints Markdown tables (paste them into docs/benchmarks.md with the date and machine). Speed: the model
is a randomly initialised, calibrated, fully binarized ResNet18-CIFAR (speed does not depend on the
weights' values). Measured: images/s of
  * torch fp32, the plain (unquantized) ResNet18-CIFAR -- what a user would otherwise deploy;
  * torch fp32, the bintut model in hard mode (fake-quantized, the same function as the engine);
  * the numpy engine (float32-BLAS path, exact integer accumulators), float and integer-only epilogues,
    at the batch size and at batch 1;
  * the teaching add/sub kernel, on one image;
  * with --c, the exported C99 library compiled by this machine's cc (-O2), one image at a time (CPU time).
On a shared machine use ``OMP_NUM_THREADS=1 ... --clock cpu``: every path then runs on one core and is
timed in CPU time, as the C library is.

With --run: the integer-only engine's top-1 agreement with torch (hard mode) and with the float-epilogue
engine on the run's test images (or on N synthetic images generated offline, --synthetic-images), and
per layer how often its int8 codes differ from the float-epilogue engine's (first 100 images).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

from bintut import binarize_, resnet18_cifar, set_controls
from bintut.engine import IntegerResNet, code_differences, integer_only_agreement
from bintut.export import export_resnet
from bintut.stages import format_table

CLOCK = time.perf_counter  # --clock cpu: time.process_time, robust to other load with OMP_NUM_THREADS=1


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return min(times)


def speed(args: argparse.Namespace) -> None:
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
    integer = IntegerResNet(export, integer_only=True)
    teaching = IntegerResNet(export, kernel="addsub")
    with torch.no_grad():
        t_plain = best_of(lambda: plain(images), args.repeats)
        t_hard = best_of(lambda: model(images), args.repeats)
    t_engine = best_of(lambda: engine(array), args.repeats)
    t_integer = best_of(lambda: integer(array), args.repeats)
    t_engine_1 = best_of(lambda: engine(array[:1]), args.repeats)
    t_integer_1 = best_of(lambda: integer(array[:1]), args.repeats)
    t_teach = best_of(lambda: teaching(array[:1]), 1)

    rows = [
        ("torch fp32, plain ResNet18-CIFAR", args.batch / t_plain),
        ("torch fp32, bintut model in hard mode", args.batch / t_hard),
        ("numpy engine (float32 BLAS, exact int accumulators)", args.batch / t_engine),
        ("numpy engine, integer-only epilogues", args.batch / t_integer),
        ("numpy engine, batch 1", 1 / t_engine_1),
        ("numpy engine, integer-only epilogues, batch 1", 1 / t_integer_1),
        ("numpy teaching kernel (literal add/sub), batch 1", 1 / t_teach),
    ]
    if args.c:
        from bintut.cexport import run_host_golden, write_c_library

        with tempfile.TemporaryDirectory() as folder:
            run = run_host_golden(write_c_library(export, folder, array[:4]).folder)
        if not run.passed:
            raise SystemExit(f"the C golden test failed: {run.failure}")
        rows.append(("C99 library (bintut export --c), cc -O2, one image at a time", 1e6 / run.mean_counter))
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}")
    print(f"batch {args.batch}, best of {args.repeats}, {args.clock} clock\n")
    print("| path | images/s | vs torch fp32 plain |\n| --- | ---: | ---: |")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate * t_plain / args.batch:.2f}x |")


def agreement(args: argparse.Namespace) -> None:
    from bintut.cexport import run_test_images
    from bintut.quant import hard_mode
    from bintut.runs import load_run

    run = load_run(args.run)
    with hard_mode(run.model):
        export = export_resnet(run.model)
    if args.synthetic_images:
        from bintut.data import ImageDataset, load_cifar100, write_synthetic_cifar100

        with tempfile.TemporaryDirectory() as root:
            test = load_cifar100(write_synthetic_cifar100(root, 16, args.synthetic_images, seed=5), train=False)
            dataset = ImageDataset(test)
            images = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
        origin = f"{len(images)} synthetic images generated offline (seed 5)"
    else:
        images, origin = run_test_images(run, args.images)
    with hard_mode(run.model):
        result = integer_only_agreement(run.model, export, torch.from_numpy(images))
    print(f"run {run.out} (preset {run.config.preset}, {run.config.data} data, final hard accuracy "
          f"{100 * run.final['hard_acc']:.1f} %); images: {origin}\n")
    print(format_table([{k: round(v, 4) for k, v in result.items()}]))
    print("\nint8 codes each layer reads, integer-only vs float-epilogue engine (first 100 images):\n")
    print(format_table(code_differences(export, images[:100])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--c", action="store_true", help="also time the exported C library (needs cc)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (fair on a loaded machine with OMP_NUM_THREADS=1; the C "
                        "library is always timed in CPU time)")
    parser.add_argument("--run", help="report the integer-only engine's agreement on this run's model instead")
    parser.add_argument("--images", type=int, default=1000, help="test images for --run (default 1000)")
    parser.add_argument("--synthetic-images", type=int, default=0, help="for --run: N synthetic images instead")
    args = parser.parse_args()
    if args.clock == "cpu":
        global CLOCK
        CLOCK = time.process_time
    if args.run:
        agreement(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
