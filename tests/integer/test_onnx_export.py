"""The deployed network as ONNX (issue 25): a valid model, run by onnxruntime's CPU provider, agreeing with
bintut's deployed integer-only network; the export command's --onnx; a one-line error without the extra."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bintut.cli import main
from bintut.integer.engine import IntegerResNet
from bintut.integer.fold import export_resnet
from bintut.integer.onnx_compare import onnx_agreement, onnx_code_differences, onnx_logits, onnx_session
from bintut.integer.onnx_export import INSTALL, OnnxExportError, OnnxUnavailableError, check, to_onnx

onnx = pytest.importorskip("onnx", reason="the ONNX export needs the optional extra: pip install 'bintut[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="running the ONNX model needs onnxruntime: "
                          "pip install 'bintut[onnx]'")

LARGER_RUN = Path(__file__).parents[1] / "fixtures" / "synth5.npz"


@pytest.fixture(scope="module")
def trained(smoke_run, data_dir):
    """The smoke run's export, its 100 test images and 100 more synthetic images (another seed), normalised."""
    from bintut.data.choice import DATA_NORMALIZATION, test_images
    from bintut.data.cifar100 import load_cifar100, write_synthetic_cifar100
    from bintut.data.transforms import ImageDataset

    export = export_resnet(smoke_run.model, normalization=DATA_NORMALIZATION["synthetic"])
    own, _, classes = test_images(smoke_run.config)
    more = load_cifar100(write_synthetic_cifar100(data_dir / "onnx", 16, 100, seed=5), train=False)
    extra = torch.stack([ImageDataset(more)[i][0] for i in range(len(more))])
    return export, torch.cat([own, extra]).numpy(), classes


@pytest.fixture(scope="module")
def model(trained):
    export, _, classes = trained
    return to_onnx(export, run="smoke", classes=classes)


def test_the_model_is_valid_onnx_with_int8_codes_and_metadata(trained, model):
    export, _, classes = trained
    check(model)  # onnx.checker with full_check, and strict shape inference
    graph = model.graph
    assert model.opset_import[0].version == 21
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 32, 32]
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == ["batch", 100]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    for name, layer in export.layers.items():
        codes, scale = weights[f"{name}.weight_codes"], weights[f"{name}.weight_scale"]
        assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
        assert codes.shape[0] == scale.shape[0] == layer.out_channels and (scale > 0).all()
        # codes * scale * s_x is A_c times the +-1 weights: the folded epilogue's multiplier
        a = (codes.reshape(len(codes), -1)[:, 0] * scale * np.float32(layer.act_step)).astype(np.float64)
        signs = np.unpackbits(layer.bits, axis=1)[:, 0].astype(np.float64) * 2 - 1
        np.testing.assert_allclose(a, layer.a * signs, rtol=1e-6, atol=1e-30)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["run"] == "smoke" and meta["bintut_version"] and meta["weights"] == "int8"
    assert '"mean": [0.5071' in meta["normalization"] and meta["classes"].count('"') == 2 * len(classes)
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "Add"} <= ops


def test_onnxruntime_agrees_with_the_deployed_network(trained, model):
    """The barely trained smoke model (many near-ties): top-1 agrees on every image whose deployed top-2 gap exceeds
    twice the largest logit difference, and on most others; int8 codes differ by one step in places (float
    requantization, round half to even), the image's codes never. (>= 99 %: the larger run's test below.)"""
    export, images, _ = trained
    session = onnx_session(model)
    result = onnx_agreement(export, images, session)
    print(result)
    assert result["images"] == 200 and result["top-1 agreement"] >= 0.9
    assert result["clear-margin images"] >= 25 and result["clear-margin agreement"] == 1.0
    assert result["largest logit difference"] < 0.02 * result["largest logit"]
    # the dynamic batch: one image at a time gives the same logits as a batch
    np.testing.assert_allclose(onnx_logits(session, images[:3], batch=1), onnx_logits(session, images[:3]),
                               atol=1e-5)
    rows = onnx_code_differences(export, images[:8], model)
    print(rows)
    assert [r["layer"] for r in rows] == list(export.layers)
    assert rows[0]["equal %"] == 100.0 and rows[1]["equal %"] > 99
    assert all(r["equal %"] + r["off by 1 %"] > 90 for r in rows)


@pytest.mark.parametrize("residual", ["float", "int8"])
def test_the_larger_synthetic_run_agrees_on_99_percent(residual):
    """The export of docs/benchmarks.md's larger synthetic run (tests/fixtures/synth5.npz, 1.6 MB, made by
    `python -m bintut train --preset smoke --synthetic-train 2000 --synthetic-test 1000 --epochs 5 --out RUN`, then
    `python -m bintut export RUN --out tests/fixtures/synth5.npz`) on 300 of its test images (regenerated, seed 1):
    onnxruntime's top-1 is the deployed network's on >= 99 % of them and on every clear-margin image, whether the
    residual branches are added unrounded (as in the deployed network: onnxruntime runs the stem and each block's
    conv1 in int8) or each rounded to int8 first (then every conv but the last block's conv2 is int8)."""
    from collections import Counter

    from bintut.data.cifar100 import synthetic_images
    from bintut.integer.format import load_export
    from bintut.integer.onnx_compare import onnxruntime_graph

    export = load_export(LARGER_RUN)
    pixels, _ = synthetic_images(1000, seed=1)
    mean, std = np.array(export.mean, np.float32), np.array(export.std, np.float32)
    images = ((pixels[:300].astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2)
    model = to_onnx(export, residual=residual)
    check(model)
    ops = Counter(n.op_type for n in onnxruntime_graph(model).graph.node)
    assert (ops["QLinearConv"], ops["QLinearAdd"]) == ((9, 0) if residual == "float" else (19, 7))
    result = onnx_agreement(export, images, onnx_session(model))
    print(residual, result)
    assert result["top-1 agreement"] >= 0.99 and result["clear-margin agreement"] == 1.0
    assert result["images"] == 300 and result["clear-margin images"] >= 270


def test_int4_weights_hold_the_same_codes_in_half_the_bytes(trained, model):
    export, images, _ = trained
    small = to_onnx(export, weights="int4")
    check(small)
    assert len(small.SerializeToString()) < 0.6 * len(model.SerializeToString())
    deployed = IntegerResNet(export, integer_only=True)(images[:64])
    logits = onnx_logits(onnx_session(small), images[:64])
    assert np.mean(logits.argmax(1) == deployed.argmax(1)) >= 0.95
    with pytest.raises(OnnxExportError, match="weights must be one of"):
        to_onnx(export, weights="int2")
    with pytest.raises(OnnxExportError, match="residual must be one of"):
        to_onnx(export, residual="int4")


def test_export_command_writes_a_checked_onnx_model(smoke_run, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--onnx", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ONNX opset 21, int8 weight codes, float residual branches" in out and "/64 test images" in out
    loaded = onnx.load(str(path))
    check(loaded)
    assert {p.key: p.value for p in loaded.metadata_props}["run"] == smoke_run.out.name
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--onnx", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_export_command_refuses_a_run_not_fully_binary_unless_forced(smoke_run, tmp_path, capsys):
    from bintut.files.run_folder import CHECKPOINT

    run = tmp_path / "early"
    shutil.copytree(smoke_run.out, run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["epoch"] = 1  # as if stopped after epoch 1 of 3: the binarization ramp is at ~0.08
    torch.save(state, run / CHECKPOINT)
    path = tmp_path / "early.onnx"
    assert main(["export", str(run), "--out", str(tmp_path / "m.npz"), "--onnx", str(path)]) == 2
    assert "never reached p = bin_ratio = 1" in capsys.readouterr().err and not path.exists()
    assert main(["export", str(run), "--out", str(tmp_path / "m.npz"), "--onnx", str(path), "--force"]) == 0
    assert "bintut: warning: run" in capsys.readouterr().err and path.is_file()


def test_a_missing_extra_is_one_line_naming_it(smoke_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(OnnxUnavailableError, match="needs the onnxruntime package"):
        onnx_session(b"")
    path = tmp_path / "model.onnx"
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--onnx", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bintut: error:") and INSTALL in err
    assert not path.exists() and not (tmp_path / "m.npz").exists()  # refused before any work
