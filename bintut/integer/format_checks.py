"""What an export must satisfy before the engine or the generated C uses it (numpy only).

An export's checksums show only that the file is whole, not that it is sound: an edited file with recomputed
checksums, or a broken exporter, is caught here, on load (:func:`bintut.integer.format.load_export`):

* names: every layer name matches :data:`LAYER_NAME` (it is pasted into comments, string literals and
  identifiers of the generated C) and gives a distinct C identifier;
* values: dtypes and ranges of every array and header field, finite floats;
* structure: the stem reads the image's 3 channels, every layer reads as many channels as its producer
  writes, shortcuts match their block's output, the head's outputs are the class count;
* arithmetic: no epilogue ``acc * m + bias + 2^(shift - 1)`` can leave int64, no residual sum or pool can
  leave the int64 range the exporter guarantees, no logit can leave int32.

Each check raises through ``bad(message)``, so that the caller's error names the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from bintut.config import INT8_MAX
from bintut.integer import fixedpoint
from bintut.integer.kernels import conv_output_size

INT32_MAX = 2**31 - 1

# what reaches generated C: letters, digits, '_' and '.' (torch's module paths), not starting with a digit or '.'
LAYER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
# the recorded data set's name (bintut.data.sets), e.g. fashion-mnist; it reaches generated C comments
DATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

IMAGE_CHANNELS = 3  # the engine and bintut.h read RGB images

MAX_CHANNELS = 2**16 - 1  # bintut.c's layer table holds channel counts as uint16_t

MAX_LAYERS = 4096  # and block entries index the layers as int16_t

# dtype kind ('u' unsigned, 'i' signed, 'f' float) and the value range of each array; None: any finite value
ARRAY_RULES = {"bits": ("u", None), "weight_scale": ("f", None), "a": ("f", None), "b": ("f", None),
               "m": ("iu", (-INT32_MAX, INT32_MAX)), "shift": ("iu", (1, fixedpoint.MAX_SHIFT)),
               "bias": ("iu", (-(2**63) + 1, 2**63 - 1))}

Bad = Callable[[str], Exception]


def c_identifier(name: str) -> str:
    """The C identifier a layer name becomes in bintut_model.h (every other character as '_')."""
    return re.sub(r"[^0-9a-zA-Z]", "_", name)


def check_names(export, bad: Bad) -> None:
    """Every layer name (the key and the layer's own) matches LAYER_NAME; no two give the same C identifier."""
    seen: dict[str, str] = {}
    for key, layer in export.layers.items():
        for name in (key, layer.name):
            if not isinstance(name, str) or not LAYER_NAME.fullmatch(name):
                shown = repr(name)[:60] + ("..." if len(repr(name)) > 60 else "")
                raise bad(f"the layer name {shown} is not allowed (letters, digits, '_' and '.', not starting with "
                          "a digit or '.', at most 128 characters: it is written into the generated C)")
        if key != layer.name:
            raise bad(f"layer {key} calls itself {layer.name}")
        other = seen.setdefault(c_identifier(key), key)
        if other != key:
            raise bad(f"the layer names {other} and {key} give the same C identifier {c_identifier(key)}")


def _integer(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_values(export, bad: Bad) -> None:
    """Types, dtypes and ranges of the header's fields and of every array; block references."""
    for key, (low, high) in {"num_classes": (1, 1 << 20), "image_size": (1, 4096),
                             "fraction_bits": (1, fixedpoint.MAX_SHIFT), "logit_bits": (0, 31)}.items():
        if not _integer(getattr(export, key), low, high):
            raise bad(f"{key} is {getattr(export, key)!r}, expected an integer in [{low}, {high}]")
    for field in ("mean", "std"):
        values = getattr(export, field)
        if values is not None and not (len(values) == IMAGE_CHANNELS and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (field == "mean" or v > 0) for v in values)):
            raise bad(f"{field} is {list(values)!r:.100}, expected {IMAGE_CHANNELS} finite numbers"
                      + (" above 0" if field == "std" else ""))
    if export.data is not None and not (isinstance(export.data, str) and DATA_NAME.fullmatch(export.data)):
        raise bad(f"data is {export.data!r:.60}, expected a data set's name (letters, digits, '-', '_', '.')")
    if not 2 <= len(export.layers) <= MAX_LAYERS:
        raise bad(f"it has {len(export.layers)} layers, expected 2 to {MAX_LAYERS}")
    for layer in export.layers.values():
        geometry = {"in_channels": (1, MAX_CHANNELS), "out_channels": (1, MAX_CHANNELS), "kernel": (1, 15),
                    "stride": (1, 15), "padding": (0, 15)}
        for key, (low, high) in geometry.items():
            if not _integer(getattr(layer, key), low, high):
                raise bad(f"{layer.name}.{key} is {getattr(layer, key)!r}, expected an integer in [{low}, {high}]")
        if layer.kind not in ("conv", "linear"):
            raise bad(f"{layer.name}.kind is {layer.kind!r}")
        if not (np.isfinite(layer.act_step) and layer.act_step > 0):
            raise bad(f"{layer.name}.act_step is {float(layer.act_step)!r}, expected a positive number")
        for key, (kinds, bounds) in ARRAY_RULES.items():
            array = getattr(layer, key)
            if array.dtype.kind not in kinds:
                raise bad(f"{layer.name}.{key} has dtype {array.dtype}")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise bad(f"{layer.name}.{key} holds NaN or infinite values")
            if bounds and array.size and not (bounds[0] <= int(array.min()) and int(array.max()) <= bounds[1]):
                raise bad(f"{layer.name}.{key} lies in [{array.min()}, {array.max()}], outside [{bounds[0]}, "
                          f"{bounds[1]}]")
    if not isinstance(export.blocks, list) or not export.blocks:
        raise bad("its blocks are not a list of residual blocks")
    for i, block in enumerate(export.blocks):
        if not isinstance(block, dict) or any(block.get(k) not in export.layers for k in ("conv1", "conv2")):
            raise bad(f"block {i} does not name its two convolutions")
        if block.get("shortcut") is not None and block["shortcut"] not in export.layers:
            raise bad(f"block {i} names an unknown shortcut layer {block['shortcut']!r}")
        if block.get("shortcut") is None and not (_integer(block.get("identity_m"), -INT32_MAX, INT32_MAX)
                                                  and _integer(block.get("identity_shift"), 1, fixedpoint.MAX_SHIFT)):
            raise bad(f"block {i}: identity multiplier {block.get('identity_m')!r} or shift "
                      f"{block.get('identity_shift')!r} out of range")


def check_structure(export, bad: Bad) -> int:
    """The layers form the network the engine and the C library compute; returns the last block's map size."""
    names = list(export.layers)
    if names[0] != "conv1" or names[-1] != "fc":
        raise bad("its layers do not start with the stem conv1 and end with the head fc")
    stem, head = export.layers["conv1"], export.layers["fc"]
    if stem.kind != "conv" or stem.in_channels != IMAGE_CHANNELS:
        raise bad(f"conv1.in_channels is {stem.in_channels}, expected {IMAGE_CHANNELS} (the image's channels)")
    if head.kind != "linear" or (head.kernel, head.stride, head.padding) != (1, 1, 0):
        raise bad("fc is not a linear layer (kind linear, kernel 1, stride 1, padding 0)")
    if head.out_channels != export.num_classes:
        raise bad(f"num_classes is {export.num_classes}, but the head fc has {head.out_channels} outputs")
    channels = stem.out_channels
    size = conv_output_size(export.image_size, stem.kernel, stem.stride, stem.padding)
    for i, block in enumerate(export.blocks):
        conv1, conv2 = export.layers[block["conv1"]], export.layers[block["conv2"]]
        for layer, reads in ((conv1, channels), (conv2, conv1.out_channels)):
            if layer.kind != "conv" or layer.in_channels != reads:
                raise bad(f"{layer.name}.in_channels is {layer.in_channels}, but its input has {reads} channels")
        out = conv_output_size(conv_output_size(size, conv1.kernel, conv1.stride, conv1.padding),
                               conv2.kernel, conv2.stride, conv2.padding)
        if block["shortcut"] is not None:
            short = export.layers[block["shortcut"]]
            if (short.kind, short.in_channels, short.out_channels) != ("conv", channels, conv2.out_channels) or \
                    conv_output_size(size, short.kernel, short.stride, short.padding) != out:
                raise bad(f"block {i}: the shortcut {short.name} does not map its {channels} x {size} x {size} input "
                          f"to conv2's {conv2.out_channels} x {out} x {out} output")
        elif (channels, size) != (conv2.out_channels, out):
            raise bad(f"block {i}: an identity shortcut needs conv2 to keep its input's {channels} channels and "
                      f"{size} x {size} map, found {conv2.out_channels} and {out} x {out}")
        channels, size = conv2.out_channels, out
        if size < 1:
            raise bad(f"images of {export.image_size} x {export.image_size} leave nothing after block {i}")
    if head.in_channels != channels:
        raise bad(f"fc.in_channels is {head.in_channels}, but the pool gives {channels} channels")
    return size


def check_arithmetic(export, bad: Bad, final_size: int) -> None:
    """The bounds the exporter guarantees (:func:`bintut.integer.format.add_integer_constants`), checked again:
    the int64 epilogue of every layer, residual sums (times the pooled positions for the last block) below 2^62,
    logits within int32."""
    for layer in export.layers.values():
        rows = zip(layer.m.tolist(), layer.bias.tolist(), layer.shift.tolist(), strict=True)
        worst = max((layer.max_acc * abs(m) + abs(b) + 2 ** (s - 1) for m, b, s in rows), default=0)
        if worst >= fixedpoint.INT64_LIMIT:
            raise bad(f"{layer.name}.bias (with {layer.name}.m): acc * m + bias reaches {worst:.3g}, beyond int64")
    positions = final_size**2
    for i, block in enumerate(export.blocks):
        conv2 = export.layers[block["conv2"]]
        if block["shortcut"] is not None:
            short = export.layers[block["shortcut"]]
            shortcut = fixedpoint.output_bound(short.m, short.shift, short.bias, short.max_acc)
        else:
            shortcut = fixedpoint.output_bound(np.array([block["identity_m"]]), np.array([block["identity_shift"]]),
                                               np.zeros(1, np.int64), INT8_MAX)
        summed = fixedpoint.output_bound(conv2.m, conv2.shift, conv2.bias, conv2.max_acc) + shortcut
        if summed * (positions if i + 1 == len(export.blocks) else 1) >= 2**62:
            raise bad(f"{conv2.name}.bias: the residual sum of block {i} could overflow int64")
    head = export.layers["fc"]
    if fixedpoint.output_bound(head.m, head.shift, head.bias, head.max_acc) > INT32_MAX:
        raise bad("fc.bias (with fc.m): the logits could overflow int32")


def check_contents(export, bad: Bad) -> None:
    """All of the above, in order (each later check relies on the earlier ones)."""
    check_names(export, bad)
    check_values(export, bad)
    check_arithmetic(export, bad, check_structure(export, bad))
