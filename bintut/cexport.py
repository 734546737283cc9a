"""The integer-only network as a self-contained C99 library, checked bit for bit against numpy.

:func:`write_c_library` writes, into one folder:

* ``bintut.h`` -- the API, ``int bintut_infer(const int8_t *image, int32_t *logits)``, and the input format;
* ``bintut_model.h`` -- the packed sign bits and per-channel integer constants as ``const`` arrays
  (they stay in flash on a microcontroller) and the layer table;
* ``bintut.c`` -- the kernels: direct convolution in the add/sub form reading packed bits, int32
  accumulators, the fixed-point epilogues of :mod:`bintut.fixedpoint`; no malloc, no float;
* ``golden.h`` + ``golden_main.c`` -- N test images with the int32 logits of the numpy integer-only
  engine, and a ``main`` that compares every logit and exits non-zero at the first difference;
* ``host_platform.c`` and ``mcu/`` -- the golden test's console and counter on a hosted system and
  on QEMU's ``mps2-an386`` Cortex-M4 board (start-up code, linker script, semihosting);
* ``README.md`` -- build commands and the flash/RAM the library needs.

:func:`run_host_golden` compiles it with the host's ``cc`` and runs it; :func:`run_mcu_golden`
cross-compiles it with ``arm-none-eabi-gcc`` and runs it under ``qemu-system-arm``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .data import CIFAR100_MEAN, CIFAR100_STD
from .engine import IntegerResNet
from .export import ExportError, ResNetExport, final_size
from .intkernels import conv_output_size, unpack_signs

STATIC_SOURCES = ("bintut.c", "bintut_fast.c", "layer_check.c", "golden_main.c", "platform.h", "host_platform.c")
KERNELS = ("fast", "reference")  # bintut.c's BINTUT_FAST default: bintut_fast.c, or the readable reference loop
MCU_SOURCES = ("mps2_platform.c", "mps2_an386.ld")
# -Wno-overlength-strings: the sign bits are string literals longer than the 4,095 characters C99 asks
# every compiler to accept (gcc, clang and arm-none-eabi-gcc take any length)
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Wno-overlength-strings")
HOST_FILES = ("bintut.c", "golden_main.c", "host_platform.c")

MCU_BOARD = "mps2-an386"  # Cortex-M4; 4 MiB code memory at 0x0, 4 MiB data memory at 0x20000000
MCU_CC = "arm-none-eabi-gcc"
MCU_CFLAGS = ("-mcpu=cortex-m4", "-mthumb", "-std=c99", "-O2", "-Wall", "-ffreestanding", "-nostdlib",
              "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections")
MCU_FILES = ("bintut.c", "golden_main.c", "mcu/mps2_platform.c")
QEMU = "qemu-system-arm"
QEMU_ARGS = ("-M", MCU_BOARD, "-display", "none", "-monitor", "none", "-serial", "null",
             "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,align=off,sleep=off")
MCU_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")
MAX_KERNEL = 9  # bintut.c keeps the taps of one window on the stack


class CompilerNotFound(RuntimeError):
    """No C compiler (or cross tool) to build the library with."""


def c_sources() -> Path:
    """The folder of the C sources shipped with bintut (package data)."""
    return Path(str(resources.files("bintut") / "c"))


# ----------------------------------------------------------------------------- layout


def tap_major_bits(layer) -> np.ndarray:
    """(out, kernel * kernel * ceil(C / 8)) bytes: per output channel and tap, the C input channels'
    sign bits, MSB first, padded to whole bytes (the order bintut.c reads NHWC inputs in)."""
    w = unpack_signs(layer.bits, layer.k).reshape(layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
    w = w.transpose(0, 2, 3, 1) >= 0  # (O, kh, kw, C)
    return np.packbits(w, axis=3).reshape(layer.out_channels, -1)


def memory_plan(export: ResNetExport) -> dict[str, int]:
    """Static buffers of bintut.c: buffer A holds the stem's and every block's output (int8 codes,
    overwritten in place), buffer B conv1's output inside a block. Checks the in-place update is safe."""
    size = conv_output_size(export.image_size, export.layers["conv1"].kernel, export.layers["conv1"].stride,
                            export.layers["conv1"].padding)
    a = size * size * export.layers["conv1"].out_channels
    b = 0
    for block in export.blocks:
        conv1, conv2 = export.layers[block["conv1"]], export.layers[block["conv2"]]
        h = conv_output_size(size, conv1.kernel, conv1.stride, conv1.padding)
        b = max(b, h * h * conv1.out_channels)
        out = conv_output_size(h, conv2.kernel, conv2.stride, conv2.padding)
        if block["shortcut"] is not None:
            _check_in_place(export.layers[block["shortcut"]], size, out)
        a = max(a, out * out * conv2.out_channels)
        size = out
    channels = max(max(layer.in_channels, layer.out_channels) for layer in export.layers.values())
    kernels = max(layer.kernel for layer in export.layers.values())
    if kernels > MAX_KERNEL:
        raise ExportError(f"kernels up to {MAX_KERNEL} x {MAX_KERNEL} are supported, found {kernels}")
    scratch = channels * (4 + 4 + 1 + 8)  # two int32 accumulator rows, one int8 output row, int64 pool sums
    return {"buffer_a": a, "buffer_b": b, "max_channels": channels, "scratch": scratch, "ram": a + b + scratch}


def _check_in_place(shortcut, size: int, out: int) -> None:
    """Writing output position p over the block input must not clobber input a later position reads."""
    cin, cout = shortcut.in_channels, shortcut.out_channels
    first_read = []  # the lowest input byte offset each output position's shortcut window reads
    for oy in range(out):
        for ox in range(out):
            iy = max(oy * shortcut.stride - shortcut.padding, 0)
            ix = max(ox * shortcut.stride - shortcut.padding, 0)
            first_read.append((iy * size + ix) * cin)
    later = np.minimum.accumulate(np.array(first_read[::-1]))[::-1]  # min over positions >= p
    for p in range(len(first_read) - 1):
        if (p + 1) * cout > later[p + 1]:
            raise ExportError(f"layer {shortcut.name}: the residual block cannot be updated in place")


def flash_bytes(export: ResNetExport) -> dict[str, int]:
    """Constant data bintut_model.h puts in flash: sign bits and the per-channel integer constants."""
    bits = sum(tap_major_bits(layer).nbytes for layer in export.layers.values())
    constants = sum(layer.out_channels * (4 + 1 + 8) for layer in export.layers.values())
    return {"sign bits": bits, "integer constants": constants}


# ----------------------------------------------------------------------------- writing C


OCTAL = [f"\\{i:03o}" for i in range(256)]  # "\ooo" escapes: never more than three digits, unlike "\x"


def _c_values(ctype: str, values: np.ndarray, per_line: int) -> str:
    flat = list(map(str, np.asarray(values).reshape(-1).tolist()))
    if ctype == "int64_t":
        flat = [f"INT64_C({v})" for v in flat]
    return ",\n    ".join(", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line))


def _c_bytes(name: str, values: np.ndarray) -> str:
    """uint8 data as one string literal of exactly n characters (no terminating NUL is stored): a C compiler
    reads it ~20x faster than a brace list of 1.4 million numbers."""
    flat = np.asarray(values, dtype=np.uint8).reshape(-1).tolist()
    lines = ('    "' + "".join(OCTAL[v] for v in flat[i : i + 64]) + '"' for i in range(0, len(flat), 64))
    return f"static const uint8_t {name}[{len(flat)}] =\n" + "\n".join(lines) + ";\n"


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    """``static const ctype name[n] = {...};`` (``name[rows][n]`` for a 2-D ``values``)."""
    values = np.asarray(values)
    if ctype == "uint8_t" and values.ndim == 1:
        return _c_bytes(name, values)
    if values.ndim == 2:
        rows = ",\n".join("  {\n    " + _c_values(ctype, row, per_line) + "\n  }" for row in values)
        return f"static const {ctype} {name}[{values.shape[0]}][{values.shape[1]}] = {{\n{rows}\n}};\n"
    return f"static const {ctype} {name}[{values.size}] = {{\n    {_c_values(ctype, values, per_line)}\n}};\n"


def _identifier(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]", "_", name)


def api_header(export: ResNetExport, source: str, kernel: str = "fast") -> str:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    size, classes = export.image_size, export.num_classes
    mean = ", ".join(f"{v}" for v in CIFAR100_MEAN)
    std = ", ".join(f"{v}" for v in CIFAR100_STD)
    return f"""/* bintut.h -- generated by bintut from {source}. Integer-only binary-weight ResNet18, C99. */
#ifndef BINTUT_H
#define BINTUT_H

#include <stdint.h>

#define BINTUT_IMAGE_SIZE {size}
#define BINTUT_IMAGE_CHANNELS 3
#define BINTUT_IMAGE_BYTES ({size} * {size} * 3)
#define BINTUT_NUM_CLASSES {classes}
#define BINTUT_LOGIT_BITS {export.logit_bits} /* logits are int32 in units of 2^-{export.logit_bits} */

/*
 * The image: int8 codes, rows x columns x channels (channels last), of the normalised image
 *     code = clamp(round(((pixel / 255 - mean[c]) / std[c]) / BINTUT_INPUT_STEP), -127, 127)
 * with mean = ({mean}) and std = ({std}); rounding half to even, as numpy and torch do.
 * This is the only step that needs float; it can run anywhere (or be a 3 x 256 lookup table).
 */
#define BINTUT_INPUT_STEP {export.input_step!r}

/* 1: the fast kernels (bintut_fast.c), 0: the readable reference loop; both give the same logits.
 * Override when compiling: -DBINTUT_FAST=0 or -DBINTUT_FAST=1. */
#ifndef BINTUT_FAST
#define BINTUT_FAST {int(kernel == "fast")}
#endif

/* Writes BINTUT_NUM_CLASSES int32 logits; argmax is the predicted class. Returns 0 (-1 on NULL).
 * Not reentrant: it uses static buffers. */
int bintut_infer(const int8_t *image, int32_t *logits);

#endif
"""


def model_header(export: ResNetExport, source: str) -> str:
    plan = memory_plan(export)
    names = list(export.layers)
    if names[0] != "conv1" or names[-1] != "fc":
        raise ExportError("the export must start with the stem conv1 and end with the head fc")
    parts = [f"/* bintut_model.h -- generated by bintut from {source}; included by bintut.c only. */\n",
             f"#define BINTUT_NUM_LAYERS {len(names)}\n#define BINTUT_NUM_BLOCKS {len(export.blocks)}\n",
             f"#define BINTUT_FRACTION_BITS {export.fraction_bits}\n",
             f"#define BINTUT_BUFFER_A_BYTES {plan['buffer_a']}\n#define BINTUT_BUFFER_B_BYTES {plan['buffer_b']}\n",
             f"#define BINTUT_MAX_CHANNELS {plan['max_channels']}\n", fast_kernel_defines(export), "\n"]
    table = []
    for name, layer in export.layers.items():
        ident = _identifier(name)
        parts.append(f"/* {name}: {layer.kind} {layer.in_channels} -> {layer.out_channels}, kernel {layer.kernel}, "
                     f"stride {layer.stride}, padding {layer.padding} */\n")
        parts.append(_c_array("uint8_t", f"bits_{ident}", tap_major_bits(layer).reshape(-1)))
        parts.append(_c_array("int32_t", f"m_{ident}", layer.m, 8))
        parts.append(_c_array("uint8_t", f"shift_{ident}", layer.shift))
        parts.append(_c_array("int64_t", f"bias_{ident}", layer.bias, 6))
        table.append(f'    {{"{name}", {layer.in_channels}, {layer.out_channels}, {layer.kernel}, {layer.stride}, '
                     f"{layer.padding}, bits_{ident}, m_{ident}, shift_{ident}, bias_{ident}}}")
    parts.append("\nstatic const bintut_layer bintut_layers[BINTUT_NUM_LAYERS] = {\n" + ",\n".join(table) + "\n};\n")
    blocks = []
    for block in export.blocks:
        shortcut = names.index(block["shortcut"]) if block["shortcut"] else -1
        blocks.append(f"    {{{names.index(block['conv1'])}, {names.index(block['conv2'])}, {shortcut}, "
                      f"{block['identity_m'] or 0}, {block['identity_shift'] or 0}}}")
    parts.append("\nstatic const bintut_block bintut_blocks[BINTUT_NUM_BLOCKS] = {\n" + ",\n".join(blocks) + "\n};\n")
    return "".join(parts)


def fast_kernel_plan(export: ResNetExport, check: bool = True) -> dict[str, int]:
    """Sizes bintut_fast.c needs, checking the shapes it supports.

    * ``weight_bytes``: the int8 +-1 weights the x86 AVX-512 VNNI path unpacks once (every layer but the
      head; the stem's 27 taps x channels padded to 32);
    * ``tap_bytes``, ``shortcut_tap_bytes``: one output channel's byte masks (kernel^2 x in_channels) of
      a conv and of a shortcut conv on the portable path;
    * ``positions``: the most output positions of a layer (window sums, the stem's rows);
    * ``buffer_b_tail``: a block with a shortcut conv writes its output behind conv1's in buffer B,
      so buffer B must hold both (ExportError otherwise).

    With ``check``, raises ExportError for a layer between stem and head whose input channels are not a
    multiple of 8 (or above 512) or whose output channels are not a multiple of 64, and for the cases above (the
    reference kernel runs such a network).
    """
    layers = list(export.layers.values())
    for layer in layers[1:-1] if check else []:
        if layer.in_channels % 8 or layer.in_channels > 512 or layer.out_channels % 64:
            raise ExportError(f"layer {layer.name}: the fast C kernel needs input channels in multiples of 8 up "
                              f"to 512 and output channels in multiples of 64, found {layer.in_channels} -> "
                              f"{layer.out_channels}; export with the reference kernel")
    stem = layers[0]
    if check and (stem.in_channels * stem.kernel**2 > 32 or stem.out_channels % 64):
        raise ExportError(f"the fast C kernel needs a stem of at most 32 inputs per window and output channels "
                          f"in multiples of 64, found {stem.in_channels} x {stem.kernel}^2 -> {stem.out_channels}")
    weight_bytes = stem.out_channels * 32 + sum(layer.out_channels * layer.kernel**2 * layer.in_channels
                                                for layer in layers[1:-1])
    tap_bytes = max(layer.kernel**2 * layer.in_channels for layer in layers[1:-1])
    shortcuts = [export.layers[block["shortcut"]] for block in export.blocks if block["shortcut"] is not None]
    shortcut_bytes = max([layer.kernel**2 * layer.in_channels for layer in shortcuts], default=8)
    plan = memory_plan(export)
    size = conv_output_size(export.image_size, stem.kernel, stem.stride, stem.padding)
    positions, tail = size * size, 0
    for block in export.blocks:
        conv1, conv2 = export.layers[block["conv1"]], export.layers[block["conv2"]]
        h = conv_output_size(size, conv1.kernel, conv1.stride, conv1.padding)
        out = conv_output_size(h, conv2.kernel, conv2.stride, conv2.padding)
        positions = max(positions, h * h)
        if block["shortcut"] is not None:
            tail = max(tail, h * h * conv1.out_channels + out * out * conv2.out_channels)
            if check and tail > plan["buffer_b"]:
                raise ExportError(f"block with {block['conv2']}: its output does not fit behind conv1's in buffer B "
                                  "(the fast C kernel); export with the reference kernel")
        size = out
    return {"weight_bytes": weight_bytes, "tap_bytes": tap_bytes, "shortcut_tap_bytes": shortcut_bytes,
            "positions": positions, "buffer_b_tail": tail}


def fast_kernel_defines(export: ResNetExport) -> str:
    """The ``#define``s of bintut_model.h that size bintut_fast.c's static buffers."""
    plan = fast_kernel_plan(export, check=False)
    return (f"#define BINTUT_MAX_POSITIONS {plan['positions']}\n#define BINTUT_MAX_TAP_BYTES {plan['tap_bytes']}\n"
            f"#define BINTUT_MAX_SHORTCUT_TAP_BYTES {plan['shortcut_tap_bytes']}\n"
            f"#define BINTUT_FAST_WEIGHT_BYTES {plan['weight_bytes']} /* x86 AVX-512 VNNI path only */\n")


def golden_header(codes: np.ndarray, logits: np.ndarray) -> str:
    return ("/* golden.h -- generated by bintut: test images (int8 codes, channels last) and the int32 logits\n"
            " * bintut's numpy integer-only engine computed for them. */\n"
            f"#define BINTUT_GOLDEN_COUNT {len(codes)}\n"
            + _c_array("int8_t", "bintut_golden_images", codes.reshape(len(codes), -1), 32)
            + _c_array("int32_t", "bintut_golden_logits", logits, 10))


def golden_vectors(export: ResNetExport, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised float images (N, 3, H, W) -> their int8 codes (N, H, W, 3) and int32 logits (numpy engine)."""
    engine = IntegerResNet(export, integer_only=True)
    codes = engine.quantize_images(images)
    return codes, engine.integer_logits(codes)


def run_test_images(run, n: int) -> tuple[np.ndarray, str]:
    """The first ``n`` test images of a run's data (normalised float, (n, 3, H, W)) and where they came from;
    seeded random images when that data is not on this machine (bit-exactness does not need real images)."""
    from .data import DataNotFoundError
    from .stages import test_images

    try:
        images, _, _ = test_images(run, n)
        return images.numpy(), f"the first {len(images)} test images of the run's {run.config.data} data"
    except (DataNotFoundError, OSError) as err:  # OSError: synthetic data that cannot be regenerated here
        rng = np.random.default_rng(0)
        why = "no test data here" if isinstance(err, DataNotFoundError) else f"the run's data cannot be read ({err})"
        return rng.standard_normal((n, 3, 32, 32)).astype(np.float32), f"seeded random images ({why})"


@dataclass
class CLibrary:
    folder: Path
    files: list[Path]
    flash: dict[str, int]
    ram: dict[str, int]
    golden: int


EXPORT_MARK = ".bintut-export"  # in every folder write_c_library made: the names it wrote, one a line
BUILD_PRODUCTS = ("bintut.o", "golden_host", "golden.elf")  # what building the golden test adds
MAX_GOLDEN = 1000  # golden images in golden.h (each 3 KB of int8 codes, 400 bytes of logits)


class CFolderError(ValueError):
    """The folder given for the C library cannot take it: not empty and not an earlier bintut export."""


def _export_names(folder: Path) -> set[str] | None:
    """The names an earlier bintut export wrote in ``folder`` (its mark, else this version's list); None if
    ``folder`` does not look like one."""
    if not (folder / "bintut_model.h").is_file():
        return None
    try:
        return set((folder / EXPORT_MARK).read_text().split()) | {EXPORT_MARK}
    except OSError:
        return {"bintut.h", "bintut_model.h", "golden.h", "README.md", "mcu", *STATIC_SOURCES}


def check_c_folder(folder: str | os.PathLike) -> Path:
    """Refuse, before any work, a folder for the C library that is empty-named, a file, or holds anything but
    an earlier bintut export (:class:`CFolderError` naming what is there); returns it as a Path."""
    from .runfolder import RunFolderError, check_name_lengths

    if not str(folder).strip():
        raise CFolderError("--c is empty: name the folder for the C library")
    folder = Path(folder)
    try:
        check_name_lengths(folder, "--c")
    except RunFolderError as err:
        raise CFolderError(str(err)) from None
    if folder.exists() and not folder.is_dir():
        raise CFolderError(f"--c {folder} is a file, not a folder: choose a folder for the C library")
    if not folder.is_dir() or not any(folder.iterdir()):
        return folder
    names = sorted(os.listdir(folder))
    ours = _export_names(folder)
    foreign = names if ours is None else [n for n in names if n not in ours | set(BUILD_PRODUCTS)]
    if "mcu" in names and ours is not None and not foreign:
        mcu = folder / "mcu"
        foreign = [f"mcu/{n}" for n in sorted(os.listdir(mcu)) if n not in MCU_SOURCES] if mcu.is_dir() else ["mcu"]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        what = "is not an earlier bintut export" if ours is None else "holds files that are not bintut's"
        raise CFolderError(f"--c {folder} {what} (it holds {shown}); an export replaces the whole folder: "
                           "move them away or choose an empty or new folder")
    return folder


def write_c_library(export: ResNetExport, folder: str | os.PathLike, images: np.ndarray,
                    source: str = "a bintut export", kernel: str = "fast") -> CLibrary:
    """Write the C library, its golden test (``images``: normalised float (N, 3, H, W)) and README.

    ``kernel``: ``"fast"`` (bintut_fast.c; ExportError for a shape it does not support) or ``"reference"``
    (the readable loop of bintut.c) as the default of ``bintut_infer``; both are written either way.

    The library is written as one unit: into a temporary folder beside ``folder``, which then takes
    its place (atomically where the system can exchange two names), so ``folder`` holds either the
    earlier export or the new one, whatever fails or interrupts the writing. A ``folder`` holding
    anything but an earlier bintut export is refused (:class:`CFolderError`) before any work.
    """
    from .runfolder import remove_stale_temporaries, temporary_path

    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "fast":
        fast_kernel_plan(export)
    folder = check_c_folder(folder)
    if folder.is_symlink():  # replace what the link points at, not the link
        folder = folder.resolve()
    if export.image_size != images.shape[-1]:
        raise ValueError(f"golden images must be {export.image_size} x {export.image_size}, got {images.shape}")
    if not 1 <= len(images) <= MAX_GOLDEN:
        raise ValueError(f"golden images: between 1 and {MAX_GOLDEN}, got {len(images)}")
    final_size(export)
    codes, logits = golden_vectors(export, images)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)  # what an export killed outright (SIGKILL) left beside it
    tmp = temporary_path(folder)
    try:
        (tmp / "mcu").mkdir(parents=True)
        written = {
            "bintut.h": api_header(export, source, kernel),
            "bintut_model.h": model_header(export, source),
            "golden.h": golden_header(codes, logits),
        }
        for name, text in written.items():
            (tmp / name).write_text(text)
        names = list(written)
        src = c_sources()
        for name in STATIC_SOURCES:
            shutil.copyfile(src / name, tmp / name)
            names.append(name)
        for name in MCU_SOURCES:
            shutil.copyfile(src / "mcu" / name, tmp / "mcu" / name)
            names.append(f"mcu/{name}")
        flash = flash_bytes(export) | {"golden images and logits (test only)": codes.nbytes + logits.nbytes}
        plan = memory_plan(export)
        ram = {"activation buffer A": plan["buffer_a"], "activation buffer B": plan["buffer_b"],
               "accumulator, output and pool rows": plan["scratch"]}
        fast = fast_kernel_plan(export, check=False)
        ram["fast kernel: sign masks of 4 channels (conv and shortcut)"] = 4 * (fast["tap_bytes"] +
                                                                              fast["shortcut_tap_bytes"])
        names.append("README.md")
        library = CLibrary(folder, [folder / name for name in names], flash, ram, len(codes))
        (tmp / "README.md").write_text(readme(export, library, source))
        (tmp / EXPORT_MARK).write_text("".join(f"{name.split('/')[0]}\n" for name in names))
        _put_in_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return library


def _put_in_place(new: Path, folder: Path) -> None:
    """Make ``new`` (a complete folder) take the name ``folder``; the folder it replaces is removed."""
    if not folder.exists():
        os.rename(new, folder)
        return
    if _exchange(new, folder):  # folder is the new export now; new holds the old one
        shutil.rmtree(new, ignore_errors=True)
        return
    from .runfolder import temporary_path

    old = temporary_path(folder)  # no atomic exchange here: two renames, the old export kept until both passed
    os.rename(folder, old)
    try:
        os.rename(new, folder)
    except BaseException:
        os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is unavailable."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def readme(export: ResNetExport, library: CLibrary, source: str) -> str:
    host = " ".join(["cc", *HOST_CFLAGS, *HOST_FILES, "-o", "golden_host"])
    mcu = " ".join([MCU_CC, *MCU_CFLAGS, "-I.", "-T", "mcu/mps2_an386.ld", *MCU_FILES, "-lgcc", "-o", "golden.elf"])
    qemu = " ".join([QEMU, *QEMU_ARGS, "-kernel", "golden.elf"])
    fast_weights = fast_kernel_plan(export, check=False)["weight_bytes"]
    flash = "\n".join(f"| {k} | {v:,} |" for k, v in library.flash.items())
    ram = "\n".join(f"| {k} | {v:,} |" for k, v in library.ram.items())
    return f"""# bintut C library

Generated by bintut from {source}: the binary-weight ResNet18 (int8 activations, ±1 weights) as
integer-only C99 -- no float, no malloc, int32 accumulators, int64 fixed-point epilogues.

```c
#include "bintut.h"
int32_t logits[BINTUT_NUM_CLASSES];
bintut_infer(image, logits);   /* image: BINTUT_IMAGE_BYTES int8 codes, see bintut.h */
```

Compile `bintut.c` with your program (`bintut.h`, `bintut_model.h` beside it). The input is the
normalised {export.image_size} x {export.image_size} RGB image quantized with step
`BINTUT_INPUT_STEP` = {export.input_step!r} (formula in `bintut.h`); logits are in units of
2^-{export.logit_bits}.

## Memory

Flash (constant data; add the code, a few KB):

| what | bytes |
| --- | ---: |
{flash}

RAM (static buffers; add a small stack, 16 KB is plenty):

| what | bytes |
| --- | ---: |
{ram}

## Kernels

`bintut_infer` runs the fast kernels of `bintut_fast.c` by default (`#define BINTUT_FAST 1` in
`bintut.h`; `-DBINTUT_FAST=0` selects the readable reference loop of `bintut.c`, same logits):
AVX-512 VNNI on an x86-64 that has it (checked at run time; its unpacked weights,
{fast_weights:,} bytes of RAM, are not in the table above), USADA8 on an Arm core with the DSP
extension (`__ARM_FEATURE_SIMD32`), portable C elsewhere or with `-DBINTUT_NO_SIMD`.
`layer_check.c` compares fast and reference kernels layer by layer on random inputs:
`cc -std=c99 -O2 layer_check.c -o layer_check && ./layer_check`.

## Golden test ({library.golden} images)

`golden.h` holds {library.golden} images and the int32 logits bintut's numpy integer-only engine computed
for them; `golden_main.c` compares every logit bit for bit, prints the first differing one and
exits 1 on a mismatch.

Host: `{host} && ./golden_host`

Cortex-M4 under QEMU ({MCU_BOARD}; Debian packages {", ".join(MCU_PACKAGES)}):

    {mcu}
    {qemu}

The counter printed under QEMU is the number of instructions executed (`-icount shift=0`: one
instruction per nanosecond of virtual time, read from the board's 25 MHz timer, so ±40); QEMU does
not model cycles.
"""


# ----------------------------------------------------------------------------- building and running


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

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.failure is None and bool(self.images)

    @property
    def mean_counter(self) -> float:
        return sum(r["counter"] for r in self.images) / max(len(self.images), 1)


LINE = re.compile(r"image (\d+): PASS class (\d+) counter (\d+) (\S+)")
FAIL = re.compile(r"image \d+: FAIL .*")


def parse_golden(command: list[str], returncode: int, output: str) -> GoldenRun:
    run = GoldenRun(command, returncode, output)
    for m in LINE.finditer(output):
        run.images.append({"image": int(m[1]), "class": int(m[2]), "counter": int(m[3])})
        run.unit = m[4]
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
    import shlex

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


class LibraryIncomplete(RuntimeError):
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


def kernel_flags(kernel: str | None = None, simd: bool = True) -> list[str]:
    """Compiler flags choosing bintut.c's kernel: ``None`` keeps bintut.h's default, ``"fast"`` or
    ``"reference"`` overrides it; ``simd=False`` keeps the fast kernel to its portable C path."""
    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    flags = [] if kernel is None else [f"-DBINTUT_FAST={int(kernel == 'fast')}"]
    return flags + ([] if simd else ["-DBINTUT_NO_SIMD"])


def build_host(folder: str | os.PathLike, limit: int | None = None, kernel: str | None = None,
               simd: bool = True) -> tuple[Path, str]:
    """Compile the golden test with the host compiler; returns the executable and the compiler's warnings.

    ``kernel``/``simd``: see :func:`kernel_flags`. The library (bintut.c with the model's constants, the
    slow part) is compiled once per kernel choice and reused while it is newer than its sources.
    """
    folder = Path(folder)
    check_library(folder, HOST_FILES)
    cc = host_compiler()
    flags = kernel_flags(kernel, simd)
    tag = "".join(f.replace("-DBINTUT_", "_").replace("=", "").lower() for f in flags)
    obj = folder / f"bintut{tag}.o"
    sources = max((folder / name).stat().st_mtime for name in ("bintut.c", "bintut_fast.c", "bintut.h",
                                                               "bintut_model.h"))
    warnings = ""
    if not obj.exists() or obj.stat().st_mtime <= sources:
        warnings += _compile([*cc, *HOST_CFLAGS, *flags, "-c", "bintut.c", "-o", obj.name], folder)
    extra = [f"-DBINTUT_GOLDEN_LIMIT={limit}"] if limit else []
    rest = [name for name in HOST_FILES if name != "bintut.c"]
    exe = f"golden_host{tag}"
    warnings += _compile([*cc, *HOST_CFLAGS, *extra, *rest, obj.name, "-o", exe], folder)
    return folder / exe, warnings


def run_host_golden(folder: str | os.PathLike, limit: int | None = None, timeout: float = 600,
                    kernel: str | None = None, simd: bool = True) -> GoldenRun:
    """Build and run the golden test on this machine; the counter is CPU time in microseconds.
    ``kernel``/``simd``: see :func:`kernel_flags` (default: the kernel bintut.h names)."""
    exe, warnings = build_host(folder, limit, kernel, simd)
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
        """Which fast path ran: "x86-64 AVX-512 VNNI", "Arm SIMD32" or "portable C"."""
        found = re.search(r"kernel: (.+)", self.output)
        return found[1] if found else "unknown"


def run_layer_check(folder: str | os.PathLike, seed: int = 1, images: int = 1, simd: bool = True,
                    timeout: float = 600) -> LayerCheck:
    """Compile and run layer_check.c on the host: every conv layer's int32 accumulators from the fast
    kernel against the reference kernel on random inputs (seeded), the stem's codes, and ``images``
    random images end to end. ``simd=False`` checks the portable C path."""
    folder = Path(folder)
    exe = f"layer_check{'' if simd else '_portable'}"
    warnings = _compile([*host_compiler(), *HOST_CFLAGS, *kernel_flags(None, simd), "layer_check.c", "-o", exe],
                        folder)
    command = [str(folder / exe), str(seed), str(images)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return LayerCheck(command, result.returncode, result.stdout + result.stderr, warnings)


def kernel_timings(folder: str | os.PathLike) -> list[dict]:
    """The golden test with the reference kernel, the fast kernel's portable C path and its SIMD path (named
    by layer_check.c: AVX-512 VNNI where the CPU has it): one row per build, with the median CPU time per
    image over the golden images after the first (the fast kernel's first call unpacks the weights), and
    whether all logits were bit-exact. Needs at least 2 golden images."""
    simd_path = run_layer_check(folder, images=0).path
    rows = []
    for kernel, simd, name in (("reference", True, "C reference kernel"),
                               ("fast", False, "C fast kernel, portable C"),
                               ("fast", True, f"C fast kernel, {simd_path}")):
        run = run_host_golden(folder, kernel=kernel, simd=simd)
        if len(run.images) < 2:
            raise ValueError(f"kernel_timings needs a library with at least 2 golden images: {run.failure}")
        ms = float(np.median([r["counter"] for r in run.images[1:]])) / 1e3
        rows.append({"path": name, "ms per image": round(ms, 2), "images/s": round(1e3 / ms, 1),
                     "bit-exact": run.passed})
    return rows


def missing_mcu_tools() -> list[str]:
    """The cross tools (``make mcu`` installs them through apt-get) that are not on PATH."""
    return [tool for tool in (MCU_CC, "arm-none-eabi-size", QEMU) if shutil.which(tool) is None]


def build_mcu(folder: str | os.PathLike, limit: int | None = None, kernel: str | None = None) -> tuple[Path, str]:
    """Cross-compile the golden test for QEMU's mps2-an386 (Cortex-M4); returns the ELF and the warnings.
    ``kernel``: see :func:`kernel_flags`."""
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
    """``python -m bintut.cexport {host,mcu} DIR``: build and run an exported library's golden test."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bintut.cexport", description=main.__doc__)
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

