"""Benchmark: one binary layer's GEMM in C, int8 x ±1 against ±1 x ±1 (XNOR + popcount), checked against numpy.

    python benchmarks/xnor_layer.py [--layer layer3] [--repeats 20]

Compiles benchmarks/xnor_popcount.c with this machine's ``cc -O2`` (no -march: the AVX-512 kernels carry target
attributes and run where the CPU has them), feeds it the im2col'd operands of one 3x3 conv of ResNet18-CIFAR
(layer1: 64 channels at 32x32, layer2: 128 at 16x16, layer3: 256 at 8x8, layer4: 512 at 4x4; one image), and
times the GEMM alone (no im2col, no epilogue; CPU time, the fastest of --repeats runs) with four kernels:
int8 codes x ±1 weights with AVX-512 VNNI ``VPDPBUSD``, and XNOR + popcount in portable C, with the ``POPCNT``
instruction and with AVX-512 ``VPOPCNTQ``. Every result is compared with numpy: the int8 one with the int64 oracle,
the XNOR ones bit for bit with :func:`bintut.integer.xnor.xnor_gemm`. Prints a Markdown table with the machine,
the load average and the date.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bintut.integer.kernels import oracle_gemm, pack_signs
from bintut.integer.xnor import as_words, xnor_gemm

LAYERS = {"layer1": (64, 32), "layer2": (128, 16), "layer3": (256, 8), "layer4": (512, 4)}
SOURCE = Path(__file__).with_name("xnor_popcount.c")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", choices=LAYERS, default="layer3")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    channels, size = LAYERS[args.layer]
    m, k, n = size * size, 9 * channels, channels
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 128, (m, k)).astype(np.uint8)  # after a ReLU
    w = np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)
    signs = np.where(rng.random((m, k)) < 0.5, -1, 1).astype(np.int8)
    cc = shutil.which("cc")
    if cc is None:
        print("no C compiler (cc) here")
        return 1
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "shape.txt").write_text(f"{m} {k} {n}\n")
        (work / "codes.u8").write_bytes(codes.tobytes())
        (work / "weights.i8").write_bytes(w.tobytes())
        (work / "a_words.u64").write_bytes(as_words(pack_signs(signs)).tobytes())
        (work / "w_words.u64").write_bytes(as_words(pack_signs(w)).tobytes())
        subprocess.run([cc, "-O2", "-std=c99", "-D_POSIX_C_SOURCE=199309L", str(SOURCE), "-o", str(work / "bench")],
                       check=True)
        out = subprocess.run([str(work / "bench"), str(work), str(args.repeats)], check=True, capture_output=True,
                             text=True).stdout
        expected = {"int8": oracle_gemm(codes.astype(np.int8), w),
                    "xnor": xnor_gemm(pack_signs(signs), pack_signs(w), k)}
        rows = []
        for line in out.splitlines():
            name, value = line.split()
            if value == "unavailable":
                rows.append((name, None, None))
                continue
            acc = np.fromfile(work / f"acc_{name}.i32", dtype=np.int32).reshape(m, n)
            exact = bool(np.array_equal(acc, expected[name.split("_")[0]]))
            rows.append((name, float(value), exact))
    macs = m * n * k
    base = dict((name, t) for name, t, _ in rows).get("int8_vnni")
    print(f"`OMP_NUM_THREADS=1 python benchmarks/xnor_layer.py --layer {args.layer} --repeats {args.repeats}`; "
          f"{cpu_model()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.2f}; one {args.layer} 3x3 conv: M = {m} positions, K = {k}, N = {n} "
          f"({macs / 1e6:.1f} M MACs), CPU time, the fastest of {args.repeats} runs\n")
    print("| kernel | µs | GMAC/s | vs int8 VNNI | equals numpy |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, seconds, exact in rows:
        if seconds is None:
            print(f"| {name} | unavailable on this CPU | | | |")
            continue
        ratio = f"{base / seconds:.2f}×" if base else "n/a"
        print(f"| {name} | {1e6 * seconds:.1f} | {macs / seconds / 1e9:.1f} | {ratio} | {exact} |")
    return 0 if all(exact in (None, True) for _, _, exact in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
