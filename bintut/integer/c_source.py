"""The integer-only network as C99 source text: the API and model headers, the golden vectors and
the memory plan (numpy only). :mod:`bintut.integer.c_library` writes them into a folder beside the
static sources in ``bintut/integer/c/``; :mod:`bintut.integer.c_build` compiles and runs them.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np

from bintut.integer.engine import IntegerResNet
from bintut.integer.format import ExportError, ResNetExport, check_names
from bintut.integer.kernels import conv_output_size, unpack_signs

STATIC_SOURCES = ("bintut.c", "bintut_fast.c", "bintut_amx.c", "layer_check.c", "golden_main.c", "platform.h",
                  "host_platform.c")

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


def c_sources() -> Path:
    """The folder of the C sources shipped with bintut (package data)."""
    return Path(str(resources.files("bintut.integer") / "c"))


def tap_major_bits(layer) -> np.ndarray:
    """(out, kernel * kernel * ceil(C / 8)) bytes: per output channel and tap, the C input channels'
    sign bits, MSB first, padded to whole bytes (the order bintut.c reads NHWC inputs in)."""
    w = unpack_signs(layer.bits, layer.k).reshape(layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
    w = w.transpose(0, 2, 3, 1) >= 0  # (O, kh, kw, C)
    return np.packbits(w, axis=3).reshape(layer.out_channels, -1)


def memory_plan(export: ResNetExport) -> dict[str, int]:
    """Static buffers of bintut.c: buffer A holds the stem's and every block's output (int8 codes,
    overwritten in place), buffer B conv1's output inside a block. Checks the in-place update is safe.

    Returns sizes in bytes (``buffer_a``, ``buffer_b``, ``scratch``, their sum ``ram``) and ``max_channels``.
    Raises ExportError when a kernel is larger than MAX_KERNEL x MAX_KERNEL, or a shortcut cannot update
    buffer A in place."""
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


def c_comment(text: str) -> str:
    """``text`` safe inside a C comment: printable ASCII only, no comment delimiter (``*/`` or ``/*``)."""
    text = "".join(c if " " <= c <= "~" else "?" for c in str(text))
    return text.replace("*/", "*?").replace("/*", "?*")


def api_header(export: ResNetExport, source: str, kernel: str = "fast") -> str:
    """The text of bintut.h: image size, input step and normalisation, logit units, ``bintut_infer``; ``kernel``
    (``"fast"`` or ``"reference"``) is the default BINTUT_FAST. Raises ValueError listing the kernels otherwise."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    size, classes, source = export.image_size, export.num_classes, c_comment(source)
    values = f"with {export.normalization_words}"
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
 * {values}; rounding half to even, as numpy and torch do.
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

/* `count` images (BINTUT_IMAGE_BYTES apart) -> count x BINTUT_NUM_CLASSES logits, the same as `count` calls
 * of bintut_infer; the AMX path shares each layer's weights between images. Returns 0 (-1 on NULL or
 * count < 0). Not reentrant. */
int bintut_infer_batch(const int8_t *images, int count, int32_t *logits);

#endif
"""


def model_header(export: ResNetExport, source: str) -> str:
    """The text of bintut_model.h: each layer's packed sign bits, int32 multipliers, shifts and int64 biases, the
    layer and block tables and the buffer sizes (bytes) of :func:`memory_plan`. Raises ExportError when the
    layers do not start with the stem ``conv1`` and end with the head ``fc``, or a layer name may not reach C
    (:func:`bintut.integer.format.check_names`: exports made in memory, not loaded), or as memory_plan does."""
    check_names(export)
    source = c_comment(source)
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

    * ``weight_bytes``: the sign bits the x86 path (AVX-512 VNNI, AMX) reorders once into 64-bit masks of
      16 channels x 4 inputs (every conv but the stem, inputs padded to multiples of 64; 1 bit per weight);
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
    weight_bytes = sum(layer.out_channels * -(-layer.kernel**2 * layer.in_channels // 64) * 8
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
            f"#define BINTUT_FAST_MASK_BYTES {plan['weight_bytes']} /* x86 path only: reordered sign bits */\n")


def golden_header(codes: np.ndarray, logits: np.ndarray) -> str:
    """The text of golden.h: the test images as int8 codes (N, H, W, 3), channels last, and the int32 logits
    (N, classes) in units of 2^-logit_bits that the numpy integer-only engine computed for them."""
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

