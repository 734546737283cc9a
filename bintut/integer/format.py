"""The exported integer network as a portable ``.npz`` of packed sign bits (numpy only).

Per Conv2d/Linear the file holds the packed signs (``np.packbits``), the per-channel weight
scale s_c, the input's int8 step s_x and the folded epilogue ``y = A_c * acc + B_c`` (made by
:mod:`bintut.integer.fold`). Version 2 adds the integer-only network: per layer a fixed-point
multiplier, shift and bias (:mod:`bintut.integer.fixedpoint`), per identity shortcut one more
multiplier and shift, and the fixed-point formats of residual sums and logits -- computed once,
by :func:`add_integer_constants`.

A JSON header records shapes and a SHA-256 per array; the header itself is covered by one more
SHA-256, so a corrupt, edited or mismatched file is refused on load; so is one whose checksums were
recomputed but whose names, values, structure or integer ranges are unsound
(:mod:`bintut.integer.format_checks`). Files are written whole
(:func:`bintut.files.atomic.replacing`): an interrupted save never leaves a truncated export behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bintut.config import INT8_MAX
from bintut.errors import BintutError
from bintut.files.atomic import replacing
from bintut.integer import fixedpoint, format_checks
from bintut.integer.kernels import conv_output_size

FORMAT = "bintut-binary-resnet"

VERSION = 2  # 2: integer-only constants, header checksum

LOGIT_BITS = 16  # logits are int32 in units of 2^-LOGIT_BITS (fewer bits if the head's range needs them)

INT32_MAX = 2**31 - 1


class ExportError(ValueError, BintutError):
    """The model cannot be exported, or a file is not a valid export."""


@dataclass
class LayerExport:
    """One binary layer: its geometry, packed signs and folded epilogue."""

    name: str
    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    bits: np.ndarray = field(repr=False)  # (out, ceil(K/8)) uint8
    weight_scale: np.ndarray = field(repr=False)  # (out,) float32
    act_step: np.float32 = np.float32(0)
    a: np.ndarray = field(repr=False, default=None)  # (out,) float32
    b: np.ndarray = field(repr=False, default=None)  # (out,) float32
    # the integer-only epilogue e(acc) = (acc * m + bias + 2^(shift-1)) >> shift (bintut.integer.fixedpoint)
    m: np.ndarray = field(repr=False, default=None)  # (out,) int32, signed
    shift: np.ndarray = field(repr=False, default=None)  # (out,) uint8, 1..62
    bias: np.ndarray = field(repr=False, default=None)  # (out,) int64

    @property
    def k(self) -> int:
        return self.in_channels * self.kernel * self.kernel

    @property
    def max_acc(self) -> int:
        """The largest |accumulator| int8 codes can produce: 127 * K."""
        return INT8_MAX * self.k

    ARRAYS = ("bits", "weight_scale", "a", "b", "m", "shift", "bias")

    def header(self) -> dict:
        meta = {k: v for k, v in asdict(self).items() if k not in self.ARRAYS}
        meta["act_step"] = float(self.act_step)
        return meta


@dataclass
class ResNetExport:
    """The whole network in layer order: stem, blocks (conv1, conv2, shortcut), head."""

    layers: dict[str, LayerExport]
    # each: {"conv1": name, "conv2": name, "shortcut": name | None,
    #        "identity_m": int | None, "identity_shift": int | None}  (the identity shortcut's epilogue)
    blocks: list[dict]
    num_classes: int
    image_size: int = 32  # the integer-only network is laid out for square images of this size
    fraction_bits: int = fixedpoint.FRACTION_BITS  # of the shared scale of residual sums and the pool
    logit_bits: int = LOGIT_BITS  # logits are int32 in units of 2^-logit_bits
    # the input normalisation (pixel / 255 - mean[c]) / std[c] the model was trained with, and the data set it was
    # trained on (a name of bintut.data.sets, e.g. 'fashion-mnist'); None: not recorded (files written before
    # bintut recorded them, or an export of a model from elsewhere)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    data: str | None = None

    @property
    def normalization_words(self) -> str:
        """The recorded input normalisation in words, or that it is not recorded (for READMEs and reports)."""
        if self.mean is None:
            return "the mean and std the model was trained with (not recorded in this export)"
        trained = f" (the data set it was trained on: {self.data})" if self.data else ""
        return (f"mean = ({', '.join(f'{v}' for v in self.mean)}) and std = ({', '.join(f'{v}' for v in self.std)})"
                f"{trained}")

    @property
    def input_step(self) -> float:
        """The int8 step of the image: codes = clip(round(normalised image / step), -127, 127)."""
        return float(self.layers["conv1"].act_step)

    def save(self, path: str | os.PathLike) -> Path:
        """Write one .npz (uncompressed: sign bits do not compress) atomically and return its path.

        The file is written under a temporary name in the same folder and renamed over ``path``
        (:func:`bintut.files.atomic.replacing`); if anything fails, the temporary file is removed and an
        existing file is left untouched. A full disk or file-size limit raises StorageFullError (an OSError).
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for layer in self.layers.values():
            for key in LayerExport.ARRAYS:
                arrays[f"{layer.name}.{key}"] = getattr(layer, key)
        header = json.dumps({
            "format": FORMAT, "version": VERSION, "num_classes": self.num_classes, "blocks": self.blocks,
            "image_size": self.image_size, "fraction_bits": self.fraction_bits, "logit_bits": self.logit_bits,
            "layers": [layer.header() for layer in self.layers.values()],
            **({"mean": list(self.mean), "std": list(self.std)} if self.mean is not None else {}),
            **({"data": self.data} if self.data is not None else {}),
            "sha256": {k: _digest(v) for k, v in arrays.items()},
        })
        header_digest = hashlib.sha256(header.encode()).hexdigest()
        with replacing(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, header=np.array(header), header_sha256=np.array(header_digest), **arrays)
            f.flush()
            os.fsync(f.fileno())
        return path

    @property
    def total_bytes(self) -> int:
        return sum(getattr(layer, key).nbytes for layer in self.layers.values() for key in LayerExport.ARRAYS)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def load_export(path: str | os.PathLike) -> ResNetExport:
    """Read and verify an export; a corrupt or mismatched file raises ExportError naming the problem."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ExportError(f"{path} is not a readable .npz export ({err})") from err
    if "header" not in files:
        raise ExportError(f"{path} has no bintut header: not a bintut export")
    try:
        header = json.loads(str(files["header"]))
    except json.JSONDecodeError as err:
        raise ExportError(f"{path}: the header is not valid JSON ({err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ExportError(f"{path}: format {header.get('format') if isinstance(header, dict) else None!r}; "
                          f"expected {FORMAT!r}: not a bintut export")
    if header.get("version") != VERSION:
        raise ExportError(
            f"{path} is a version {header.get('version')!r} export; this bintut reads version {VERSION} "
            "(it adds the integer-only constants): re-export the run with `python -m bintut export RUN`"
        )
    digest = str(files["header_sha256"]) if "header_sha256" in files else None
    if digest != hashlib.sha256(str(files["header"]).encode()).hexdigest():
        raise ExportError(f"{path}: the header does not match its checksum (file edited or corrupted)")
    try:
        return _checked(_from_files(path, header, files), path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        if isinstance(err, ExportError):
            raise
        raise ExportError(f"{path}: the header is malformed ({type(err).__name__}: {str(err)[:200]})") from None


def _from_files(path: Path, header: dict, files: dict[str, np.ndarray]) -> ResNetExport:
    layers: dict[str, LayerExport] = {}
    for meta in header["layers"]:
        name = meta["name"]
        arrays = {}
        for key in LayerExport.ARRAYS:
            full = f"{name}.{key}"
            if full not in files:
                raise ExportError(f"{path}: array {full!r} is missing")
            if _digest(files[full]) != header["sha256"].get(full):
                raise ExportError(f"{path}: array {full!r} does not match its checksum (file corrupted)")
            arrays[key] = files[full]
        layer = LayerExport(**{**meta, "act_step": np.float32(meta["act_step"])}, **arrays)
        n, k = layer.out_channels, layer.k
        expected = {"bits": (n, (k + 7) // 8), **{key: (n,) for key in LayerExport.ARRAYS[1:]}}
        for key, shape in expected.items():
            if getattr(layer, key).shape != shape:
                raise ExportError(
                    f"{path}: {name}.{key} has shape {getattr(layer, key).shape}, expected {shape} for "
                    f"{layer.kind} {layer.in_channels}->{layer.out_channels} kernel {layer.kernel}"
                )
        layers[name] = layer
    # absent in files written before bintut recorded them (mean and std, then the data set's name): not recorded
    mean, std, data = header.get("mean"), header.get("std"), header.get("data")
    return ResNetExport(layers, header["blocks"], header["num_classes"], header["image_size"],
                        header["fraction_bits"], header["logit_bits"], tuple(mean) if mean else None,
                        tuple(std) if std else None, data)


def _checked(export: ResNetExport, path: Path) -> ResNetExport:
    """Refuse an export whose checksums match but whose contents are unsound (an edited file with recomputed
    checksums, or a bug): names, values, structure and integer ranges (:mod:`bintut.integer.format_checks`)."""
    format_checks.check_contents(
        export, lambda what: ExportError(f"{path}: {what}; the file is malformed (edited, or from a broken exporter)"))
    return export


def check_names(export: ResNetExport) -> None:
    """Raise ExportError naming a layer name that may not reach generated C (see
    :data:`bintut.integer.format_checks.LAYER_NAME`), or two names that give the same C identifier."""
    format_checks.check_names(export, ExportError)


def final_size(export: ResNetExport) -> int:
    """Height (= width), in pixels, of the last block's output for the export's image size.

    Raises ExportError when the image is too small to leave at least one pixel there."""
    size = export.image_size
    for name in ["conv1"] + [b[k] for b in export.blocks for k in ("conv1", "conv2")]:
        layer = export.layers[name]
        size = conv_output_size(size, layer.kernel, layer.stride, layer.padding)
    if size < 1:
        raise ExportError(f"images of {export.image_size} x {export.image_size} are too small for this network")
    return size


def add_integer_constants(export: ResNetExport) -> None:
    """Compute every fixed-point constant of the integer-only network once (see bintut.integer.fixedpoint).

    Tensors between blocks are int8 codes at the step of the next block's conv1; inside a block,
    conv1's output is requantized to conv2's step; conv2 and the shortcut map to the shared scale
    ``s_out * 2^-fraction_bits`` and are added; the last block's ``s_out`` is the head's step times
    the number of pooled positions, so the pool is a plain sum. Raises ExportError naming the layer
    when a multiplier, bias or the logits' range does not fit.
    """
    layers, blocks, frac = export.layers, export.blocks, export.fraction_bits
    positions = final_size(export) ** 2

    def constants(name: str, a, b, unit: float, max_input: int, what: str = "") -> tuple[np.ndarray, ...]:
        try:
            return fixedpoint.fixed_point(a, b, unit, max_input)
        except fixedpoint.FixedPointRangeError as err:
            raise ExportError(f"layer {name}{what}: {err}; it cannot be exported to integers") from err

    def store(layer: LayerExport, unit: float) -> None:
        m, shift, bias = constants(layer.name, layer.a, layer.b, unit, layer.max_acc)
        layer.m, layer.shift, layer.bias = m.astype(np.int32), shift.astype(np.uint8), bias

    block_steps = [float(layers[b["conv1"]].act_step) for b in blocks]
    store(layers["conv1"], block_steps[0])
    for i, block in enumerate(blocks):
        conv1, conv2 = layers[block["conv1"]], layers[block["conv2"]]
        store(conv1, float(conv2.act_step))
        s_out = block_steps[i + 1] if i + 1 < len(blocks) else float(layers["fc"].act_step) * positions
        unit = s_out * 2.0**-frac
        store(conv2, unit)
        if block["shortcut"] is not None:
            shortcut = layers[block["shortcut"]]
            if shortcut.act_step != conv1.act_step:
                raise ExportError(
                    f"layer {shortcut.name}: its int8 step {float(shortcut.act_step):.6g} differs from "
                    f"{conv1.name}'s {float(conv1.act_step):.6g}, but both read the same tensor; the integer-only "
                    "network stores it once"
                )
            store(shortcut, unit)
            block["identity_m"] = block["identity_shift"] = None
        else:
            m, shift, _ = constants(conv1.name, [block_steps[i]], [0.0], unit, INT8_MAX, " (identity shortcut)")
            block["identity_m"], block["identity_shift"] = int(m[0]), int(shift[0])
        shortcut_bound = (fixedpoint.output_bound(shortcut.m, shortcut.shift, shortcut.bias, shortcut.max_acc)
                          if block["shortcut"] else fixedpoint.output_bound(m, shift, np.zeros(1), INT8_MAX))
        summed = (fixedpoint.output_bound(conv2.m, conv2.shift, conv2.bias, conv2.max_acc) + shortcut_bound)
        if summed * (positions if i + 1 == len(blocks) else 1) >= 2**62:
            raise ExportError(f"layer {conv2.name}: the residual sum could overflow int64; it cannot be exported")
    fc = layers["fc"]
    for bits in range(LOGIT_BITS, -1, -1):  # as many fractional bits as the worst case allows
        try:
            m, shift, bias = fixedpoint.fixed_point(fc.a, fc.b, 2.0**-bits, fc.max_acc)
        except fixedpoint.FixedPointRangeError:
            continue  # a multiplier too large for this many fractional bits
        if fixedpoint.output_bound(m, shift, bias, fc.max_acc) <= INT32_MAX:
            break
    else:
        raise ExportError("layer fc: its logits could overflow int32 even in whole units; it cannot be exported")
    fc.m, fc.shift, fc.bias = m.astype(np.int32), shift.astype(np.uint8), bias
    export.logit_bits = bits
