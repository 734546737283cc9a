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
  * torch's own int8 CPU inference of the plain network (FX graph mode post-training quantization, the
    "x86" quantized backend), if it runs here (else the table says why);
  * onnxruntime's CPU provider on the ONNX export (one thread, batch 64 and 1), if the onnx extra is installed;
  * with --c, the exported C99 library compiled by this machine's cc (-O2), one image at a time (CPU time):
    the reference kernel and the fast kernel (its best path, which the table names -- AMX-INT8 where the
    CPU and OS allow it --, its AVX-512 VNNI path on such a CPU, and its portable C path); the fast
    kernel's median over the golden images after the first (the first call reorders the sign bits, a
    one-time cost printed below the table); and the SIMD paths' ``bintut_infer_batch`` over --batch images.
Every row names its batch, its ratio to torch int8 at the same batch, MACs per cycle (cycles = time x the
nominal clock of /proc/cpuinfo) and its share of one core's AVX-512 VNNI and AMX-INT8 int8 peaks.
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
from bintut.integer.compare import integer_only_agreement
from bintut.integer.engine import IntegerResNet, code_differences
from bintut.integer.fold import export_resnet
from bintut.integer.opcount import layer_costs
from bintut.teaching.stages import format_table

CLOCK = time.perf_counter  # --clock cpu: time.process_time, robust to other load with OMP_NUM_THREADS=1


def cpu_peaks() -> dict:
    """This core's clock and int8 peaks from /proc/cpuinfo (Linux; the lscpu flags): MACs per cycle of
    AVX-512 VNNI (VPDPBUSD, 64 MACs, 2 per cycle on Sapphire Rapids and Zen 4 -- an assumption for other
    cores), AVX-VNNI (256-bit) and AMX-INT8 (TDPBUSD, 1,024 per cycle). The clock is the nominal/TSC rate
    ("cpu MHz" there): cycles = CPU seconds x that clock, since perf's cycle counter is often missing in a VM
    (said in the output when it is)."""
    info = {"model": platform.processor() or platform.machine(), "flags": set(), "hz": float("nan")}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                info["model"] = value.strip()
            elif key == "flags":
                info["flags"] = set(value.split())
            elif key == "cpu MHz" and info["hz"] != info["hz"]:
                info["hz"] = float(value) * 1e6
    except OSError:
        pass
    flags = info["flags"]
    info["vnni"] = 128 if "avx512_vnni" in flags else 64 if "avx_vnni" in flags else float("nan")
    info["amx"] = 1024 if "amx_int8" in flags else float("nan")
    return info


def perf_cycles() -> str:
    """Whether ``perf stat -e cycles`` counts here (one line for the output)."""
    import shutil
    import subprocess

    if not shutil.which("perf"):
        return "perf not installed"
    out = subprocess.run(["perf", "stat", "-x,", "-e", "cycles", "true"], capture_output=True, text=True).stderr
    return "perf stat counts cycles" if out[:1].isdigit() else f"perf stat: cycles {out.split(',')[0] or '?'}"


INT8_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"}


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return min(times)


def torch_int8(plain: torch.nn.Module, images: torch.Tensor):
    """torch's quantized x86 backend on a copy of the plain network (post-training static quantization,
    FX graph mode, calibrated on ``images``): a callable, or the reason it cannot run here."""
    import copy
    import warnings

    try:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        if "x86" not in torch.backends.quantized.supported_engines:
            return f"this torch build has no 'x86' quantized engine ({torch.backends.quantized.supported_engines})"
        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FX quantization's deprecation notices
            prepared = prepare_fx(copy.deepcopy(plain), get_default_qconfig_mapping("x86"),
                                  example_inputs=(images[:1],))
            with torch.no_grad():
                prepared(images)
            quantized = convert_fx(prepared)
        return quantized
    except Exception as err:  # any failure is reported in the table, not hidden
        return f"{type(err).__name__}: {err}"


def onnxruntime_rows(export, images: np.ndarray, repeats: int) -> list[tuple]:
    """onnxruntime's CPU provider, one thread, on the export's ONNX model (bintut.integer.onnx_export) with each kind
    of residual branch: images/s at batch 64 and batch 1, or one row saying why it did not run (no onnx extra)."""
    try:
        from bintut.integer.onnx_compare import onnx_session
        from bintut.integer.onnx_export import INPUT, require, to_onnx

        version = require("onnxruntime").__version__
        sessions = {residual: onnx_session(to_onnx(export, residual=residual), threads=1)
                    for residual in ("float", "int8")}
    except ImportError as err:
        return [(f"onnxruntime (CPU provider, 1 thread): did not run, {err}", float("nan"))]
    rows = []
    for residual, session in sessions.items():
        name = (f"onnxruntime {version} CPU provider, 1 thread, the ONNX export (--onnx-residual {residual}: "
                + ("stem and conv1s int8 QLinearConv, conv2 and shortcuts float)" if residual == "float" else
                   "19 of 20 convs int8 QLinearConv, QLinearAdd)"))
        for batch in (64, 1):
            part = images[:batch]  # fewer than 64 when --batch is smaller
            t = best_of(lambda part=part, session=session: session.run(None, {INPUT: part}), repeats)
            rows.append((f"{name}, batch {len(part)}", len(part) / t, len(part)))
    return rows


def speed(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = binarize_(resnet18_cifar(pretrained=False))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 3, 32, 32))  # calibrate int8 ranges and BN statistics
    model.eval()
    set_controls(model, 1.0, 1.0)
    export = export_resnet(model)
    macs = sum(cost.macs for cost in layer_costs(export))  # per image; the plain network has the same convs
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
    int8 = torch_int8(plain, images)
    if not isinstance(int8, str):
        with torch.no_grad():
            t_int8 = best_of(lambda: int8(images), args.repeats)
            t_int8_1 = best_of(lambda: int8(images[:1]), args.repeats)

    rows = [
        ("torch fp32, plain ResNet18-CIFAR", args.batch / t_plain),
        ("torch fp32, bintut model in hard mode", args.batch / t_hard),
        ("torch int8, quantized x86 backend (FX post-training), plain ResNet18-CIFAR"
         + (f": did not run, {int8}" if isinstance(int8, str) else ""),
         float("nan") if isinstance(int8, str) else args.batch / t_int8),
        ("torch int8, quantized x86 backend, batch 1" + (": did not run" if isinstance(int8, str) else ""),
         float("nan") if isinstance(int8, str) else 1 / t_int8_1, 1),
        ("numpy engine (float32 BLAS, exact int accumulators)", args.batch / t_engine),
        ("numpy engine, integer-only epilogues", args.batch / t_integer),
        ("numpy engine, batch 1", 1 / t_engine_1),
        ("numpy engine, integer-only epilogues, batch 1", 1 / t_integer_1),
        ("numpy teaching kernel (literal add/sub), batch 1", 1 / t_teach),
    ]
    rows += onnxruntime_rows(export, array, args.repeats)
    if args.c:
        from bintut.integer.c_build import run_host_golden, run_layer_check
        from bintut.integer.c_library import write_c_library

        golden = torch.randn(max(args.batch, args.c_images + 1), 3, 32, 32).numpy()  # the C library's images
        with tempfile.TemporaryDirectory() as folder:
            write_c_library(export, folder, golden)
            path = run_layer_check(folder).path
            builds = {("reference", True, True): "reference kernel (a bit mask per add)",
                      ("fast", False, True): "fast kernel, portable C (-DBINTUT_NO_SIMD)",
                      ("fast", True, False): "fast kernel, x86-64 AVX-512 VNNI (-DBINTUT_NO_AMX)",
                      ("fast", True, True): f"fast kernel, {path} (the default)"}
            if path != "x86-64 AMX-INT8":
                del builds["fast", True, False]
            slow = args.c_images + 1  # the slow builds run fewer images
            runs = {(kernel, simd, amx): run_host_golden(folder, kernel=kernel, simd=simd, amx=amx,
                                                         limit=None if kernel == "fast" and simd else slow)
                    for kernel, simd, amx in builds}
        for (kernel, _simd, _amx), run in runs.items():
            if not run.passed:
                raise SystemExit(f"the C golden test failed ({kernel} kernel): {run.failure}")
        first = runs["fast", True, True].images[0]["counter"]
        for key, name in builds.items():
            us = float(np.median([r["counter"] for r in runs[key].images[1:]]))
            rows.append((f"C99 library, {name}, cc -O2, one image at a time", 1e6 / us, 1))
        for key, name in builds.items():
            batch = runs[key].batch
            if key[0] == "fast" and key[1] and args.batch > 1 and batch:
                rows.append((f"C99 library, {name}, bintut_infer_batch of {batch['images']} images",
                             batch["images"] * 1e6 / batch["counter"], args.batch))
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}")
    peaks = cpu_peaks()
    int8_rate = {1: float("nan") if isinstance(int8, str) else 1 / t_int8_1,
                 args.batch: float("nan") if isinstance(int8, str) else args.batch / t_int8}
    print(f"cpu: {peaks['model']}; int8 flags: {' '.join(sorted(peaks['flags'] & INT8_FLAGS)) or 'none'}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"batch {args.batch}, best of {args.repeats}, {args.clock} clock; {macs / 1e6:.1f} M MACs per image; "
          f"cycles = time x {peaks['hz'] / 1e9:.2f} GHz (nominal clock, /proc/cpuinfo; {perf_cycles()}); "
          f"peaks per core: AVX-512 VNNI {peaks['vnni']} MACs/cycle, AMX-INT8 {peaks['amx']}\n")
    print("| path | batch | images/s | vs torch fp32 plain | vs torch int8, same batch | MACs/cycle | "
          "% of VNNI peak | % of AMX peak |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rate, *batch in rows:
        batch = batch[0] if batch else 1 if "batch 1" in name or "one image" in name else args.batch
        per_cycle = rate * macs / peaks["hz"]
        print(f"| {name} | {batch} | {rate:.1f} | {rate * t_plain / args.batch:.2f}x | "
              f"{rate / int8_rate[batch]:.2f}x | {per_cycle:.1f} | {100 * per_cycle / peaks['vnni']:.1f} | "
              f"{100 * per_cycle / peaks['amx']:.1f} |")
    if args.c:
        print(f"\nC: median CPU time per image over golden images 2..{args.c_images + 1} (2..{len(golden)} for the "
              f"SIMD builds), then all {len(golden)} at once through bintut_infer_batch; the fast kernel's first call "
              f"(reorders the sign bits once) took {first / 1e3:.1f} ms")


def agreement(args: argparse.Namespace) -> None:
    from bintut.data.choice import golden_images
    from bintut.quant import hard_mode
    from bintut.training.export import export_run

    exported = export_run(args.run, metrics=True)  # the run's export, as `python -m bintut export` makes it
    run, export = exported.run, exported.export
    if args.synthetic_images:
        from bintut.data.cifar100 import load_cifar100, write_synthetic_cifar100
        from bintut.data.transforms import ImageDataset

        with tempfile.TemporaryDirectory() as root:
            test = load_cifar100(write_synthetic_cifar100(root, 16, args.synthetic_images, seed=5), train=False)
            dataset = ImageDataset(test)
            images = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
        origin = f"{len(images)} synthetic images generated offline (seed 5)"
    else:
        images, origin = golden_images(run.config, args.images)
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
    parser.add_argument("--c-images", type=int, default=8, help="images timed per C kernel (default 8)")
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
