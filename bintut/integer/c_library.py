"""The integer-only network as a self-contained C99 library, checked bit for bit against numpy.

:func:`write_c_library` writes, into one folder:

* ``bintut.h`` -- the API, ``int bintut_infer(const int8_t *image, int32_t *logits)``, and the input format;
* ``bintut_model.h`` -- the packed sign bits and per-channel integer constants as ``const`` arrays
  (they stay in flash on a microcontroller) and the layer table;
* ``bintut.c`` -- the kernels: direct convolution in the add/sub form reading packed bits, int32
  accumulators, the fixed-point epilogues of :mod:`bintut.integer.fixedpoint`; no malloc, no float;
* ``golden.h`` + ``golden_main.c`` -- N test images with the int32 logits of the numpy integer-only
  engine, and a ``main`` that compares every logit and exits non-zero at the first difference;
* ``host_platform.c`` and ``mcu/`` -- the golden test's console and counter on a hosted system and
  on QEMU's ``mps2-an386`` Cortex-M4 board (start-up code, linker script, semihosting);
* ``README.md`` -- build commands and the flash/RAM the library needs.

:func:`run_host_golden` compiles it with the host's ``cc`` and runs it; :func:`run_mcu_golden`
cross-compiles it with ``arm-none-eabi-gcc`` and runs it under ``qemu-system-arm``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bintut.errors import BintutError
from bintut.files.atomic import remove_stale_temporaries, temporary_path
from bintut.files.run_folder import RunFolderError, check_name_lengths
from bintut.integer.c_source import (
    HOST_CFLAGS,
    HOST_FILES,
    KERNELS,
    MCU_BOARD,
    MCU_CC,
    MCU_CFLAGS,
    MCU_FILES,
    MCU_PACKAGES,
    MCU_SOURCES,
    QEMU,
    QEMU_ARGS,
    STATIC_SOURCES,
    api_header,
    c_sources,
    fast_kernel_plan,
    flash_bytes,
    golden_header,
    golden_vectors,
    memory_plan,
    model_header,
)
from bintut.integer.format import ResNetExport, final_size


@dataclass
class CLibrary:
    folder: Path
    files: list[Path]
    flash: dict[str, int]
    ram: dict[str, int]
    golden: int


EXPORT_MARK = ".bintut-export"  # in every folder write_c_library made: the names it wrote, one a line

# what building the golden test, the layer check and the kernel timings add (bintut.integer.c_build):
# bintut<tag>_<key>.o (bintut.o, bintut<tag>.o from earlier versions), golden_host<tag>, layer_check[_portable],
# golden.elf; <tag> names the kernel choice (_fast0, _no_simd, ...)
BUILD_PRODUCT = re.compile(r"bintut(_[0-9a-z]+)*\.o|golden_host(_[0-9a-z]+)*|layer_check(_[0-9a-z]+)*|golden\.elf")

MAX_GOLDEN = 1000  # golden images in golden.h (each 3 KB of int8 codes, 400 bytes of logits)


class CFolderError(ValueError, BintutError):
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
    """Refuse, before any work, a folder for the C library that is empty-named, a file, behind a symbolic link
    loop, or holds anything but an earlier bintut export (:class:`CFolderError` naming what is there); returns it
    as a Path."""
    if not str(folder).strip():
        raise CFolderError("--c is empty: name the folder for the C library")
    folder = Path(folder)
    try:
        check_name_lengths(folder, "--c")
    except RunFolderError as err:
        raise CFolderError(str(err)) from None
    try:
        folder.resolve()  # a symbolic link on the way that leads back to itself: Python 3.11 RuntimeError, else ELOOP
    except (RuntimeError, OSError) as err:
        raise CFolderError(f"--c {folder}: a symbolic link on that path leads back to itself ({err}): choose a "
                           "real folder for the C library") from None
    if folder.exists() and not folder.is_dir():
        raise CFolderError(f"--c {folder} is a file, not a folder: choose a folder for the C library")
    if not folder.is_dir() or not any(folder.iterdir()):
        return folder
    names = sorted(os.listdir(folder))
    ours = _export_names(folder)
    foreign = names if ours is None else [n for n in names if n not in ours and not BUILD_PRODUCT.fullmatch(n)]
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
    """Write the C library, its golden test (``images``: normalised float32 (N, 3, H, W), 1 <= N <= MAX_GOLDEN,
    H = W = the export's image size) and README; returns the written :class:`CLibrary`.

    ``kernel``: ``"fast"`` (bintut_fast.c; ExportError for a shape it does not support) or ``"reference"``
    (the readable loop of bintut.c) as the default of ``bintut_infer``; both are written either way.

    The library is written as one unit: into a temporary folder beside ``folder``, which then takes
    its place (atomically where the system can exchange two names), so ``folder`` holds either the
    earlier export or the new one, whatever fails or interrupts the writing. A ``folder`` holding
    anything but an earlier bintut export is refused (:class:`CFolderError`) before any work.

    Raises ValueError, before any work, for an unknown ``kernel`` (listing the choices), golden images of
    another size than the export's, or fewer than 1 or more than MAX_GOLDEN of them; ExportError when
    the network does not fit the C code (too small an image, an unsupported kernel or shape).
    """
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
AMX-INT8 tiles on an x86-64 whose CPU and OS allow them, else AVX-512 VNNI (both checked at run time;
the sign bits reordered once into 64-bit masks, {fast_weights:,} bytes of RAM, and on the AMX path the
batch buffers are not in the table above; `-DBINTUT_NO_AMX` keeps to AVX-512 VNNI), USADA8 on an Arm core
with the DSP extension (`__ARM_FEATURE_SIMD32`), portable C elsewhere or with `-DBINTUT_NO_SIMD`.
`bintut_infer_batch(images, count, logits)` runs `count` images (the AMX path shares each layer's
weights between up to 8 of them; the other paths run them one by one).
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

