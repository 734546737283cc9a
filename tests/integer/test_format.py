"""bintut.integer.format / format_checks: an export whose checksums match but whose names, structure or integer
ranges are unsound is refused on load with one line naming the field (issue 24, kinds 1 and 2). Exports here
are tiny numpy-made networks (a stem, one residual block, a head): no torch, no training."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from bintut.integer import c_source
from bintut.integer.engine import IntegerResNet
from bintut.integer.fold import fp32_state_dict_bytes
from bintut.integer.format import (
    ExportError,
    LayerExport,
    ResNetExport,
    add_integer_constants,
    check_names,
    load_export,
)


def _layer(name: str, kind: str, cin: int, cout: int, kernel: int, rng: np.random.Generator) -> LayerExport:
    k = cin * kernel * kernel
    return LayerExport(name, kind, cin, cout, kernel, 1, kernel // 2,
                       bits=rng.integers(0, 256, (cout, (k + 7) // 8), dtype=np.uint8),
                       weight_scale=np.full(cout, 0.1, np.float32), act_step=np.float32(0.05),
                       a=rng.uniform(0.001, 0.01, cout).astype(np.float32),
                       b=rng.uniform(-0.5, 0.5, cout).astype(np.float32))


def tiny_export(image_size: int = 8, classes: int = 10) -> ResNetExport:
    """conv1 3 -> 8 (3x3), one block 8 -> 8 with an identity shortcut, fc 8 -> classes."""
    rng = np.random.default_rng(0)
    layers = {"conv1": _layer("conv1", "conv", 3, 8, 3, rng),
              "layer1.0.conv1": _layer("layer1.0.conv1", "conv", 8, 8, 3, rng),
              "layer1.0.conv2": _layer("layer1.0.conv2", "conv", 8, 8, 3, rng),
              "fc": _layer("fc", "linear", 8, classes, 1, rng)}
    export = ResNetExport(layers, [{"conv1": "layer1.0.conv1", "conv2": "layer1.0.conv2", "shortcut": None}],
                          classes, image_size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    add_integer_constants(export)
    return export


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return tiny_export().save(tmp_path_factory.mktemp("export") / "good.npz")


def rewritten(good, path, edit):
    """``good`` edited by ``edit(header, arrays)``, its checksums recomputed: only the checks can tell."""
    with np.load(good) as npz:
        files = {k: npz[k] for k in npz.files}
    header = json.loads(str(files["header"]))
    edit(header, files)
    header["sha256"] = {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in files.items()
                        if k not in ("header", "header_sha256")}
    text = json.dumps(header)
    files["header"], files["header_sha256"] = np.array(text), np.array(hashlib.sha256(text.encode()).hexdigest())
    np.savez(path, **files)
    return path


def rename(header, files, old, new):
    for meta in header["layers"]:
        if meta["name"] == old:
            meta["name"] = new
    for block in header["blocks"]:
        for key, value in block.items():
            if value == old:
                block[key] = new
    for key in [k for k in files if k.startswith(old + ".")]:
        files[new + key[len(old):]] = files.pop(key)


def test_the_tiny_export_loads_and_its_c_names_it():
    export = tiny_export()
    assert "static const uint8_t bits_layer1_0_conv1[" in c_source.model_header(export, "tiny")


INJECTED = 'x */ int main(void) { return 0; } /* '


@pytest.mark.parametrize("name", [INJECTED, "layer1.0\nconv1", 'a"b', "9lives", ".hidden", "n" * 129, "é"])
def test_a_layer_name_that_could_reach_c_as_code_is_refused_at_load(good, tmp_path, name):
    """Kind 1: a name holding */ was pasted into the generated C's comments and strings (and compiled)."""
    bad = rewritten(good, tmp_path / "bad.npz", lambda h, f: rename(h, f, "layer1.0.conv2", name))
    with pytest.raises(ExportError, match="the layer name .* is not allowed") as info:
        load_export(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_names_are_checked_before_c_is_written_for_an_export_made_in_memory():
    export = tiny_export()
    layer = export.layers.pop("layer1.0.conv2")
    layer.name = INJECTED
    export.layers = {"conv1": export.layers["conv1"], "layer1.0.conv1": export.layers["layer1.0.conv1"],
                     INJECTED: layer, "fc": export.layers["fc"]}
    export.blocks[0]["conv2"] = INJECTED
    with pytest.raises(ExportError, match="is not allowed"):
        check_names(export)
    with pytest.raises(ExportError, match="is not allowed"):
        c_source.model_header(export, "memory")


def test_names_giving_the_same_c_identifier_are_refused(good, tmp_path):
    bad = rewritten(good, tmp_path / "bad.npz", lambda h, f: rename(h, f, "layer1.0.conv2", "layer1_0.conv1"))
    with pytest.raises(ExportError, match="layer1.0.conv1 and layer1_0.conv1 give the same C identifier"):
        load_export(bad)


def test_the_source_named_in_generated_comments_cannot_close_them():
    text = c_source.api_header(tiny_export(), "runs/x */ int evil; /* \n#define", "reference")
    first = text.splitlines()[0]
    assert first.count("*/") == 1 and first.endswith("*/") and "evil" in first and "#define" in first
    assert "int evil" not in text.split("*/", 1)[1]


def _narrow_head(header, files, classes=7):
    """A head of ``classes`` outputs, self-consistent in its arrays and shapes (num_classes left alone)."""
    meta = next(m for m in header["layers"] if m["name"] == "fc")
    meta["out_channels"] = classes
    for key in LayerExport.ARRAYS:
        files[f"fc.{key}"] = files[f"fc.{key}"][:classes]


def _conv2_reads(header, files, channels=16):
    """layer1.0.conv2 reading 16 channels where conv1 writes 8 (arrays and shapes consistent)."""
    meta = next(m for m in header["layers"] if m["name"] == "layer1.0.conv2")
    meta["in_channels"] = channels
    files["layer1.0.conv2.bits"] = np.zeros((8, (channels * 9 + 7) // 8), np.uint8)


def _set(name, key, index, value, dtype=np.int64):
    def edit(header, files):
        array = files[f"{name}.{key}"].astype(dtype)
        array[index] = value
        files[f"{name}.{key}"] = array
    return edit


@pytest.mark.parametrize("edit, message", [
    (_narrow_head, "num_classes is 10, but the head fc has 7 outputs"),
    (lambda h, f: h.update(num_classes=7), "num_classes is 7, but the head fc has 10 outputs"),
    (_conv2_reads, r"layer1\.0\.conv2\.in_channels is 16, but its input has 8 channels"),
    (lambda h, f: h["layers"][-1].update(kind="conv"), "fc is not a linear layer"),
    (lambda h, f: h["layers"][2].update(padding=0), "block 0: an identity shortcut needs conv2 to keep its input's 8 "
     "channels and 8 x 8 map, found 8 and 6 x 6"),
    (_set("conv1", "bias", 0, 2**63 - 1000), r"conv1\.bias \(with conv1\.m\): acc \* m \+ bias reaches .*beyond int64"),
    (_set("conv1", "bias", 0, 2**64 - 1, np.uint64), r"conv1\.bias lies in \[.*\], outside"),
    (lambda h, f: (_set("layer1.0.conv2", "bias", 1, 2**60)(h, f),
                   _set("layer1.0.conv2", "shift", 1, 1, np.uint8)(h, f)),
     r"layer1\.0\.conv2\.bias: the residual sum of block 0 could overflow"),
    (_set("fc", "bias", 2, 2**55), r"fc\.bias \(with fc\.m\): the logits could overflow int32"),
    (_set("fc", "m", 0, 2**31, np.int64), r"fc\.m lies in \[.*\], outside \[-2147483647, 2147483647\]"),
    (lambda h, f: h.update(fraction_bits=0), r"fraction_bits is 0, expected an integer in \[1, 62\]"),
    (lambda h, f: h.update(mean=["*/", 0, 0]), r"mean is \['\*/', 0, 0\], expected 3 finite numbers"),
    (lambda h, f: h.update(std=[1, 1, 0]), "std is .*, expected 3 finite numbers above 0"),
    (lambda h, f: h.update(blocks=[]), "its blocks are not a list of residual blocks"),
    (lambda h, f: _conv2_reads(h, f, 65536), r"layer1\.0\.conv2\.in_channels is 65536, expected an integer in "
     r"\[1, 65535\]"),
])
def test_a_self_consistent_but_unsound_export_is_refused_naming_the_field(good, tmp_path, edit, message):
    """Kind 2: a head narrower than the class count, or biases near 2^63, loaded, and the C read out of bounds
    or overflowed."""
    bad = rewritten(good, tmp_path / "bad.npz", edit)
    with pytest.raises(ExportError, match=message) as info:
        load_export(bad)
    assert "\n" not in str(info.value) and "the file is malformed" in str(info.value)


def test_an_unedited_rewrite_still_loads(good, tmp_path):
    """The rewriting itself changes nothing the checks see."""
    export = load_export(rewritten(good, tmp_path / "same.npz", lambda h, f: None))
    assert export.num_classes == 10 and list(export.layers) == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "fc"]


@pytest.mark.parametrize("edit, message", [
    (lambda h, f: h["layers"][1].update(stride=0), r"layer1\.0\.conv1\.stride is 0"),
    (lambda h, f: h["blocks"][0].update(identity_shift=200), "block 0: identity multiplier .* or shift 200"),
    (lambda h, f: h.update(num_classes="100"), "num_classes is '100'"),
    (lambda h, f: h["layers"][0].pop("kernel"), "the header is malformed"),
    (lambda h, f: h.update(blocks={}), "blocks are not a list"),
    (lambda h, f: f.update({"conv1.shift": np.full(f["conv1.shift"].shape, 200, np.uint8)}),
     r"conv1\.shift lies in \[200, 200\], outside \[1, 62\]"),
    (lambda h, f: f.update({"fc.m": f["fc.m"].astype(np.float64)}), r"fc\.m has dtype float64"),
])
def test_an_export_with_recomputed_checksums_is_checked_for_structure_and_ranges(saved_export, tmp_path, edit,
                                                                                  message):
    """5e: a malformed export whose checksums were recomputed gave KeyError/TypeError/ZeroDivisionError, or
    ran with a shift of 200 (undefined behaviour in the generated C)."""
    rewritten(saved_export, tmp_path / "bad.npz", edit)
    with pytest.raises(ExportError, match=message):
        load_export(tmp_path / "bad.npz")


def _rewrite_header(path, out, edit):
    """A copy of an export whose JSON header was edited (the arrays and the header checksum kept)."""
    with np.load(path) as npz:
        files = {k: npz[k] for k in npz.files}
    header = json.loads(str(files["header"]))
    edit(header)
    files["header"] = np.array(json.dumps(header))
    np.savez(out, **files)
    return out


def test_export_header_is_covered_by_a_checksum(saved_export, tmp_path):
    """Item 8: editing the header (act_step, the block list) is refused, not run silently."""
    load_export(saved_export)

    def step(header):
        header["layers"][0]["act_step"] *= 2

    def blocks(header):
        header["blocks"][0], header["blocks"][1] = header["blocks"][1], header["blocks"][0]

    for edit in (step, blocks):
        edited = _rewrite_header(saved_export, tmp_path / f"{edit.__name__}.npz", edit)
        with pytest.raises(ExportError, match="the header does not match its checksum"):
            load_export(edited)


def test_old_export_versions_are_refused_clearly(saved_export, tmp_path):
    def version_1(header):
        header["version"] = 1

    old = _rewrite_header(saved_export, tmp_path / "v1.npz", version_1)
    with pytest.raises(ExportError, match=r"version 1 export; this bintut reads version 2 .*re-export the run"):
        load_export(old)


def test_export_roundtrip_size_and_corruption(exported, tmp_path):
    model, export = exported
    path = export.save(tmp_path / "model.npz")
    size = path.stat().st_size
    fp32 = fp32_state_dict_bytes(model)
    assert 1.3e6 < size < 1.7e6 and 44e6 < fp32 < 46e6, (size, fp32)
    loaded = load_export(path)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(IntegerResNet(loaded)(x), IntegerResNet(export)(x))

    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    with pytest.raises(ExportError, match="checksum|not a readable"):
        load_export(tmp_path / "flipped.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ExportError, match="not a readable .npz"):
        load_export(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ExportError, match="no bintut header"):
        load_export(tmp_path / "other.npz")


def test_mismatched_export_is_refused(exported, tmp_path):
    _, export = exported
    layer = export.layers["layer1.0.conv1"]
    original = layer.bits
    layer.bits = original[:, :-1]  # wrong width for K = 576
    try:
        path = export.save(tmp_path / "bad.npz")
    finally:
        layer.bits = original
    with pytest.raises(ExportError, match=r"layer1\.0\.conv1\.bits has shape \(64, 71\), expected \(64, 72\)"):
        load_export(path)


def test_export_errors_name_the_layer(exported):
    from bintut.integer.format import add_integer_constants

    _, export = exported
    layer = export.layers["layer3.0.conv2"]
    saved = layer.a.copy()
    layer.a[5] = 1e9  # a multiplier no 31-bit fixed-point number with a shift >= 1 can hold
    try:
        with pytest.raises(ExportError,
                           match=r"layer layer3\.0\.conv2: channel 5: multiplier .* too large for the fixed-point"):
            add_integer_constants(export)
    finally:
        layer.a[:] = saved
    fc = export.layers["fc"]
    saved = fc.a.copy()
    fc.a[:] = 1e6  # |logit| could reach 127 * 512 * 1e6: beyond int32 even in whole units
    try:
        with pytest.raises(ExportError, match="layer fc: its logits could overflow int32"):
            add_integer_constants(export)
    finally:
        fc.a[:] = saved
    shortcut = export.layers["layer2.0.downsample.0"]
    saved = shortcut.act_step
    shortcut.act_step = np.float32(saved * 2)
    try:
        with pytest.raises(ExportError, match=r"layer layer2\.0\.downsample\.0: its int8 step"):
            add_integer_constants(export)
    finally:
        shortcut.act_step = saved
    add_integer_constants(export)  # restored: fine again
