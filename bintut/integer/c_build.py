"""Compiling and running the C library: the host golden test, the per-layer check, kernel timings,
and the Cortex-M4 build run under QEMU (``mps2-an386``). ``python -m bintut.integer.c_build FOLDER``
runs the host golden test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bintut.errors import BintutError
from bintut.files.atomic import remove_stale_temporaries, replacing
from bintut.integer.c_library import CLibrary
from bintut.integer.c_source import (
    HOST_CFLAGS,
    HOST_FILES,
    KERNELS,
    MCU_BOARD,
    MCU_CC,
    MCU_CFLAGS,
    MCU_FILES,
    MCU_PACKAGES,
    QEMU,
    QEMU_ARGS,
    c_sources,
)


class CompilerNotFound(RuntimeError, BintutError):
    """No C compiler (or cross tool) to build the library with."""


@dataclass
class GoldenRun:
    """The golden test's outcome, parsed from its output."""

    command: list[str]
    returncode: int
    output: str
    images: list[dict] = field(default_factory=list)  # {"image", "class", "counter"} per passing image
    failure: str | None = None
    unit: str = ""
    warnings: str = ""  # the compiler's diagnostics
    batch: dict | None = None  # {"images", "counter"}: all images through bintut_infer_batch (hosted systems)

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.failure is None and bool(self.images)

    @property
    def mean_counter(self) -> float:
        return sum(r["counter"] for r in self.images) / max(len(self.images), 1)


LINE = re.compile(r"image (\d+): PASS class (\d+) counter (\d+) (\S+)")

FAIL = re.compile(r"image \d+: FAIL .*")

BATCH = re.compile(r"batch of (\d+): PASS counter (\d+) \S+")


def parse_golden(command: list[str], returncode: int, output: str) -> GoldenRun:
    run = GoldenRun(command, returncode, output)
    for m in LINE.finditer(output):
        run.images.append({"image": int(m[1]), "class": int(m[2]), "counter": int(m[3])})
        run.unit = m[4]
    batch = BATCH.search(output)
    if batch:
        run.batch = {"images": int(batch[1]), "counter": int(batch[2])}
    failed = FAIL.search(output)
    if failed:
        run.failure = failed[0]
    elif returncode != 0:
        run.failure = f"exit status {returncode}: {_printable(output.strip()[-300:])}"
    elif not run.images:
        run.failure = "the golden test ran no image"
    return run


def host_compiler() -> list[str]:
    """The host C compiler command: ``$CC`` split as a shell would (``"gcc -m32"`` keeps its flags), else cc,
    gcc or clang; CompilerNotFound if ``$CC`` names no installed program or no compiler is installed."""
    wanted = os.environ.get("CC", "").strip()
    if wanted:
        try:
            command = shlex.split(wanted)
        except ValueError as err:
            raise CompilerNotFound(f"$CC={wanted!r} cannot be read as a command ({err})") from None
        path = shutil.which(command[0])
        if path is None:
            raise CompilerNotFound(f"$CC names {command[0]!r}, which is not installed (not on PATH): install it, "
                                   "or unset CC to use cc, gcc or clang")
        return [path, *command[1:]]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise CompilerNotFound("no C compiler found (tried $CC, cc, gcc, clang)")


def _compile(command: list[str], cwd: Path) -> str:
    """Run a compiler command; returns its diagnostics (warnings), raises RuntimeError on failure."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"compiling failed: {' '.join(command)}\n{_printable(result.stderr[-3000:])}")
    return result.stderr


class LibraryIncomplete(RuntimeError, BintutError):
    """The folder lacks files of an exported C library."""


def check_library(folder: Path, sources: tuple[str, ...]) -> None:
    """Raise :class:`LibraryIncomplete` naming the files of an export that ``folder`` lacks."""
    needed = ("bintut.h", "bintut_model.h", "golden.h", "platform.h", *sources)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise LibraryIncomplete(f"{folder} lacks {', '.join(missing)} of an exported C library: export it again "
                                "with `python -m bintut export RUN --c DIR`")


def _printable(text: str) -> str:
    """``text`` without control characters (but newlines and tabs): what a program printed, safe to show."""
    return "".join(c if c in "\n\t" or c.isprintable() else "?" for c in text)


def kernel_flags(kernel: str | None = None, simd: bool = True, amx: bool = True) -> list[str]:
    """Compiler flags choosing bintut.c's kernel: ``None`` keeps bintut.h's default, ``"fast"`` or
    ``"reference"`` overrides it; ``simd=False`` keeps the fast kernel to its portable C path, ``amx=False``
    an x86-64 with AMX-INT8 to its AVX-512 VNNI path.

    Raises ValueError listing the kernels for any other ``kernel``."""
    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    flags = [] if kernel is None else [f"-DBINTUT_FAST={int(kernel == 'fast')}"]
    return flags + ([] if simd else ["-DBINTUT_NO_SIMD"]) + ([] if amx else ["-DBINTUT_NO_AMX"])


def build_host(folder: str | os.PathLike, limit: int | None = None, kernel: str | None = None,
               simd: bool = True, amx: bool = True) -> tuple[Path, str]:
    """Compile the golden test with the host compiler; returns the executable and the compiler's warnings.

    ``kernel``/``simd``/``amx``: see :func:`kernel_flags`. The library (bintut.c with the model's constants, the
    slow part) is compiled once per :func:`build_key` -- compiler, flags and sources -- into
    ``bintut<tag>_<key>.o`` (written whole), so a changed ``$CC`` (``"gcc -fsanitize=address"``) or source always
    compiles afresh; the objects of earlier keys of the same kernel choice are removed.
    Raises CompilerNotFound or RuntimeError (with the compiler's messages) when compiling fails.
    """
    folder = Path(folder)
    check_library(folder, HOST_FILES)
    cc = host_compiler()
    flags = kernel_flags(kernel, simd, amx)
    tag = "".join(f.replace("-DBINTUT_", "_").replace("=", "").lower() for f in flags)
    obj = folder / f"bintut{tag}_{build_key(folder, [*cc, *HOST_CFLAGS, *flags])}.o"
    warnings = ""
    if not obj.is_file():
        remove_stale_temporaries(obj)  # what a compile killed outright left behind
        with replacing(obj) as tmp:
            warnings += _compile([*cc, *HOST_CFLAGS, *flags, "-c", "bintut.c", "-o", tmp.name], folder)
        for old in folder.glob(f"bintut{tag}_*.o"):
            if old != obj and re.fullmatch(rf"bintut{re.escape(tag)}_[0-9a-f]{{16}}\.o", old.name):
                old.unlink(missing_ok=True)
    extra = [f"-DBINTUT_GOLDEN_LIMIT={limit}"] if limit else []
    rest = [name for name in HOST_FILES if name != "bintut.c"]
    exe = f"golden_host{tag}"
    warnings += _compile([*cc, *HOST_CFLAGS, *extra, *rest, obj.name, "-o", exe], folder)
    return folder / exe, warnings


def build_key(folder: str | os.PathLike, command: list[str]) -> str:
    """16 hex digits of the SHA-256 of what compiling the library depends on: the compiler ``command`` (with its
    flags), the size and time of the compiler program, the environment variables gcc and clang read for
    headers and tools, and every ``.c`` and ``.h`` file in ``folder`` (names and bytes)."""
    folder = Path(folder)
    program = Path(command[0]).resolve()
    status = program.stat() if program.exists() else None
    env = {k: os.environ.get(k) for k in ("CPATH", "C_INCLUDE_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH")}
    digest = hashlib.sha256(json.dumps([command, str(program), status and [status.st_size, status.st_mtime_ns],
                                        env]).encode())
    for path in sorted(folder.glob("*.[ch]")):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_host_golden(folder: str | os.PathLike, limit: int | None = None, timeout: float = 600,
                    kernel: str | None = None, simd: bool = True, amx: bool = True) -> GoldenRun:
    """Build and run the golden test on this machine; the counter is CPU time in microseconds.
    ``kernel``/``simd``/``amx``: see :func:`kernel_flags` (default: the kernel bintut.h names). On a hosted
    system the golden test also runs every image through ``bintut_infer_batch`` (``GoldenRun.batch``)."""
    exe, warnings = build_host(folder, limit, kernel, simd, amx)
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
    run = parse_golden([str(exe)], result.returncode, result.stdout + result.stderr)
    run.warnings = warnings
    return run


@dataclass
class LayerCheck:
    """layer_check.c's outcome: the fast kernel against the reference kernel, layer by layer."""

    command: list[str]
    returncode: int
    output: str
    warnings: str = ""

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and "layer check: PASS" in self.output

    @property
    def path(self) -> str:
        """Which fast path ran: "x86-64 AMX-INT8", "x86-64 AVX-512 VNNI", "Arm SIMD32" or "portable C"."""
        found = re.search(r"kernel: (.+)", self.output)
        return found[1] if found else "unknown"


def run_layer_check(folder: str | os.PathLike, seed: int = 1, images: int = 1, simd: bool = True,
                    timeout: float = 600, amx: bool = True) -> LayerCheck:
    """Compile and run layer_check.c on the host: every conv layer's int32 accumulators from the fast
    kernel against the reference kernel on random inputs (seeded), the stem's codes, ``images`` random
    images end to end and (images > 0) a batch of 3 through ``bintut_infer_batch``. ``simd=False`` checks
    the portable C path, ``amx=False`` the AVX-512 VNNI path on a CPU with AMX-INT8."""
    folder = Path(folder)
    exe = f"layer_check{'' if simd else '_portable'}{'' if amx else '_no_amx'}"
    warnings = _compile([*host_compiler(), *HOST_CFLAGS, *kernel_flags(None, simd, amx), "layer_check.c", "-o",
                         exe], folder)
    command = [str(folder / exe), str(seed), str(images)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return LayerCheck(command, result.returncode, result.stdout + result.stderr, warnings)


def kernel_timings(folder: str | os.PathLike) -> list[dict]:
    """The golden test with the reference kernel, the fast kernel's portable C path and its best SIMD path (named
    by layer_check.c: AMX-INT8 or AVX-512 VNNI where the CPU has them; on an AMX machine its AVX-512 VNNI path
    too): one row per build, with the median CPU time per image over the golden images after the first (the
    fast kernel's first call reorders the sign bits), and whether all logits were bit-exact; then one row per
    SIMD build for all golden images through ``bintut_infer_batch``. Needs at least 2 golden images: raises
    ValueError, with the golden test's failure, when a build ran fewer."""
    simd_path = run_layer_check(folder, images=0).path
    builds = [("reference", True, True, "C reference kernel"), ("fast", False, True, "C fast kernel, portable C")]
    if simd_path == "x86-64 AMX-INT8":
        builds.append(("fast", True, False, "C fast kernel, x86-64 AVX-512 VNNI"))
    if simd_path != "portable C":
        builds.append(("fast", True, True, f"C fast kernel, {simd_path}"))
    rows, batches = [], []
    for kernel, simd, amx, name in builds:
        run = run_host_golden(folder, kernel=kernel, simd=simd, amx=amx)
        if len(run.images) < 2:
            raise ValueError(f"kernel_timings needs a library with at least 2 golden images: {run.failure}")
        ms = float(np.median([r["counter"] for r in run.images[1:]])) / 1e3
        rows.append({"path": name, "ms per image": round(ms, 2), "images/s": round(1e3 / ms, 1),
                     "bit-exact": run.passed})
        if kernel == "fast" and simd and run.batch:
            ms = run.batch["counter"] / 1e3 / run.batch["images"]
            batches.append({"path": f"{name}, bintut_infer_batch of {run.batch['images']}",
                            "ms per image": round(ms, 2), "images/s": round(1e3 / ms, 1), "bit-exact": run.passed})
    return rows + batches


def missing_mcu_tools() -> list[str]:
    """The cross tools (``make mcu`` installs them through apt-get) that are not on PATH."""
    return [tool for tool in (MCU_CC, "arm-none-eabi-size", QEMU) if shutil.which(tool) is None]


def build_mcu(folder: str | os.PathLike, limit: int | None = None, kernel: str | None = None) -> tuple[Path, str]:
    """Cross-compile the golden test for QEMU's mps2-an386 (Cortex-M4); returns the ELF and the warnings.
    ``kernel``: see :func:`kernel_flags`; ``limit``: run only the first ``limit`` golden images.

    Raises CompilerNotFound naming the missing cross tools and the ``make mcu`` that installs them."""
    folder = Path(folder)
    check_library(folder, (*MCU_FILES, "mcu/mps2_an386.ld"))
    if missing_mcu_tools():
        raise CompilerNotFound(f"missing {', '.join(missing_mcu_tools())}: run `make mcu` (installs "
                               f"{' '.join(MCU_PACKAGES)} with apt-get)")
    extra = [f"-DBINTUT_GOLDEN_LIMIT={limit}"] if limit else []
    warnings = _compile([MCU_CC, *MCU_CFLAGS, *kernel_flags(kernel), *extra, "-I.", "-T", "mcu/mps2_an386.ld",
                         *MCU_FILES, "-lgcc", "-o", "golden.elf"], folder)
    return folder / "golden.elf", warnings


def mcu_size(elf: str | os.PathLike) -> dict[str, int]:
    """arm-none-eabi-size: text, data, bss; flash = text + data, RAM = data + bss (the stack included)."""
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


def run_mcu_golden(folder: str | os.PathLike, limit: int | None = None, timeout: float = 1800,
                   kernel: str | None = None) -> GoldenRun:
    """Build and run the golden test on an emulated Cortex-M4; the counter is instructions executed.
    ``kernel``: see :func:`kernel_flags` (default: the kernel bintut.h names)."""
    elf, warnings = build_mcu(folder, limit, kernel)
    command = [QEMU, *QEMU_ARGS, "-kernel", str(elf)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    run = parse_golden(command, result.returncode, result.stdout + result.stderr)
    run.warnings = warnings
    return run


def inner_loop(folder: str | os.PathLike | None = None, kernel: str = "reference") -> str:
    """The add/sub kernel (between the INNER LOOP markers) of bintut.c (``kernel="reference"``) or of
    bintut_fast.c's portable and Cortex-M4 path (``"fast"``), to show it."""
    name = {"reference": "bintut.c", "fast": "bintut_fast.c"}[kernel]
    text = (Path(folder) if folder else c_sources()).joinpath(name).read_text()
    return text.split("/* BEGIN INNER LOOP */\n")[1].split("/* END INNER LOOP */")[0]


def sizes_table(library: CLibrary, elf_size: dict[str, int] | None = None) -> list[dict]:
    """Flash and RAM rows (bytes) for a notebook table; with arm-none-eabi-size figures when given."""
    rows = [{"memory": "flash", "what": k, "bytes": v} for k, v in library.flash.items()]
    rows += [{"memory": "RAM", "what": k, "bytes": v} for k, v in library.ram.items()]
    if elf_size:
        rows += [{"memory": "flash", "what": f"whole {MCU_BOARD} image (arm-none-eabi-size text + data)",
                  "bytes": elf_size["flash"]},
                 {"memory": "RAM", "what": f"whole {MCU_BOARD} image (data + bss, 16 KB stack included)",
                  "bytes": elf_size["ram"]}]
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m bintut.integer.c_build {host,mcu} DIR``: build and run an exported library's golden test."""
    parser = argparse.ArgumentParser(prog="python -m bintut.integer.c_build", description=main.__doc__)
    parser.add_argument("target", choices=("host", "mcu"), help=f"this machine's cc, or a Cortex-M4 ({MCU_BOARD}) "
                        "under QEMU")
    parser.add_argument("folder", help="a folder written by `python -m bintut export RUN --c DIR`")
    parser.add_argument("--limit", type=int, help="run only the first N golden images")
    parser.add_argument("--kernel", choices=KERNELS, help="override the library's default kernel (bintut.h)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1 (the number of golden images to run), got {args.limit}")
    if not Path(args.folder).is_dir() or not (Path(args.folder) / "bintut_model.h").is_file():
        print(f"bintut: error: {args.folder} holds no exported C library (bintut_model.h)", file=sys.stderr)
        return 2
    try:
        run = (run_host_golden if args.target == "host" else run_mcu_golden)(args.folder, args.limit,
                                                                            kernel=args.kernel)
    except (CompilerNotFound, LibraryIncomplete, RuntimeError, subprocess.TimeoutExpired, OSError) as err:
        print(f"bintut: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bintut: stopped", file=sys.stderr)
        return 130
    print("$ " + " ".join(run.command))
    print(run.output.rstrip())
    if run.warnings:
        print(f"compiler warnings:\n{run.warnings}")
    if args.target == "mcu":
        size = mcu_size(Path(args.folder) / "golden.elf")
        print(f"{MCU_BOARD} (Cortex-M4), arm-none-eabi-size: text {size['text']:,} data {size['data']:,} "
              f"bss {size['bss']:,} -> flash {size['flash']:,} bytes, RAM {size['ram']:,} bytes (16 KB stack included)")
        if run.images:
            print(f"instructions per image (QEMU -icount, +-40; QEMU does not model cycles): {run.mean_counter:,.0f}")
    elif run.images:
        print(f"host CPU time per image: {run.mean_counter / 1e3:.1f} ms")
    print("PASS" if run.passed else f"FAIL: {run.failure}")
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main())
