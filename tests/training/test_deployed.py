"""A trained run, deployed: the integer engines (numpy, torch) and the metrics' deployed accuracy on weights the
training stack trained (the smoke run). The integer layer's own tests (tests/integer) use calibrated random
models and tests/fixtures/synth5.npz instead, so that `pytest tests/integer` needs no training."""

import json

import numpy as np
import pytest
import torch

from bintut.integer.compare import prediction_agreement
from bintut.integer.engine import IntegerResNet, clear_margin
from bintut.integer.fold import export_resnet
from bintut.integer.onnx_compare import onnx_agreement, onnx_code_differences, onnx_logits, onnx_session
from bintut.integer.onnx_export import OnnxExportError, check, to_onnx
from bintut.integer.torch_engine import TorchIntegerResNet
from bintut.quant import hard_mode

from ..conftest import tiny
from ..integer.conftest import both_engines


@pytest.mark.slow
def test_whole_network_agrees_with_torch(smoke_run, data_dir):
    """A trained, fully binarized model: the engine predicts what torch predicts."""
    from bintut.data.cifar100 import load_cifar100, write_synthetic_cifar100
    from bintut.data.transforms import ImageDataset

    model = smoke_run.model
    export = export_resnet(model)
    test = load_cifar100(write_synthetic_cifar100(data_dir / "engine", 16, 1000, seed=5), train=False)
    images = torch.stack([ImageDataset(test)[i][0] for i in range(len(test))])
    result = prediction_agreement(model, export, images)
    print(result)
    # The logit bound is the check; how many winners a difference that small flips depends on how many near-ties
    # the trained weights give (a near-chance smoke model has many): 0.995 held for one training trajectory, 0.99
    # (10 near-ties of 1,000, largest difference 0.4 % of the largest logit) for the next, the forward unchanged.
    assert result["images"] == 1000 and result["top-1 agreement"] >= 0.99
    assert result["largest logit difference"] < 0.01 * result["largest logit"]
    # the three kernels give the same network output
    engine = IntegerResNet(export)
    few = images[:2].numpy()
    assert np.array_equal(IntegerResNet(export, "oracle")(few), IntegerResNet(export, "addsub")(few))
    assert np.array_equal(IntegerResNet(export, "oracle")(few), engine(few))


@pytest.mark.slow
def test_integer_only_agrees_with_torch_and_the_float_engine(smoke_run, data_dir):
    """The integer-only engine on a trained (smoke, synthetic-data) model: top-1 agrees wherever torch's own
    top-2 logits are further apart than twice the engines' largest deviation (this weakly trained model has many
    near-ties, so the plain agreement rate, ~97-98.5 %, says more about the model than about the engine); codes
    differ from the float epilogue's by at most one almost everywhere."""
    from bintut.data.cifar100 import load_cifar100, write_synthetic_cifar100
    from bintut.data.transforms import ImageDataset
    from bintut.integer.compare import integer_only_agreement
    from bintut.integer.engine import code_differences

    export = export_resnet(smoke_run.model)
    test = load_cifar100(write_synthetic_cifar100(data_dir / "engine", 16, 1000, seed=5), train=False)
    images = torch.stack([ImageDataset(test)[i][0] for i in range(200)])
    result = integer_only_agreement(smoke_run.model, export, images)
    print(result)
    assert result["images"] == 200
    assert result["largest logit difference vs torch"] < 0.01 * result["largest logit"]
    assert result["clear winners (torch top-2 gap > 2x that)"] >= 50
    with torch.no_grad():
        ref = smoke_run.model(images).numpy()
    logits = IntegerResNet(export, integer_only=True)(images.numpy())
    top2 = np.sort(ref, axis=1)[:, -2:]
    disagree = logits.argmax(1) != ref.argmax(1)
    margin = np.abs(logits - ref).max()
    assert np.all(top2[disagree, 1] - top2[disagree, 0] < 2 * margin), "a clear winner changed"
    assert result["clear winners (torch top-2 gap > 2x that)"] == int((top2[:, 1] - top2[:, 0] > 2 * margin).sum())
    rows = code_differences(export, images[:16].numpy())
    assert [r["layer"] for r in rows] == list(export.layers)
    assert rows[0]["equal %"] == 100.0  # the image codes are the same quantization
    assert all(r["off by more %"] < 1 for r in rows)


def test_trained_model_torch_integer_equals_numpy_on_the_whole_test_set(smoke_run):
    from bintut.data.choice import test_images

    export = export_resnet(smoke_run.model)
    images, labels, _ = test_images(smoke_run.config)
    expected, got = both_engines(export, images)
    np.testing.assert_array_equal(got, expected)
    # ... and the accuracy every epoch row reports is this network's
    reported = smoke_run.final["deployed_acc"]
    assert reported == pytest.approx(float((expected.argmax(1) == labels.numpy()).mean()))


def test_float_fake_quant_and_integer_networks_agree_where_the_margin_guarantees_it(smoke_run):
    """Where torch's hard-mode top-2 logit gap exceeds twice the largest logit difference between the two
    networks, no rounding can change the winner: those images must agree. (The share of the others is a
    property of the trained weights and of the machine's float arithmetic, so it is reported, not asserted.)"""
    from bintut.data.choice import test_images

    images, _, _ = test_images(smoke_run.config)
    export = export_resnet(smoke_run.model)
    with torch.no_grad(), hard_mode(smoke_run.model):
        ref = smoke_run.model(images)
    deployed, ref = TorchIntegerResNet(export)(images).numpy(), ref.numpy()
    largest, clear = clear_margin(ref, deployed)
    assert np.array_equal(deployed.argmax(1)[clear], ref.argmax(1)[clear])
    print(f"agreement {float((deployed.argmax(1) == ref.argmax(1)).mean()):.3f} on {len(images)} images; "
          f"{int(clear.sum())} with a clear margin; largest logit difference {largest:.4f}")


@pytest.mark.slow
def test_bf16_run_reports_the_integer_networks_accuracy_on_any_cpu(data_dir, tmp_path, smoke_run):
    """Trained under bf16 autocast (native on some CPUs, emulated on others: the weights differ), the
    deployed accuracy in metrics.jsonl is the numpy integer engine's accuracy on the exported weights."""
    from bintut.data.choice import test_images
    from bintut.training.loop import train
    from bintut.training.runs import load_run

    cfg = tiny(data_dir, tmp_path / "bf16", amp="bf16", synthetic_train=8, batch_size=8, epochs=1,
               synthetic_test=100, eval_batch_size=100, init_from=str(smoke_run.out),
               lr=[[1.0, "stay", 1e-5, 1e-5]])
    train(cfg)
    reported = json.loads((tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()[-1])
    run = load_run(tmp_path / "bf16")
    images, labels, _ = test_images(run.config)
    engine = IntegerResNet(export_resnet(run.model), integer_only=True)
    accuracy = float((engine(images.numpy()).argmax(1) == labels.numpy()).mean())
    assert reported["test_images"] == 100 and reported["deployed_acc"] == pytest.approx(accuracy)


onnx = pytest.importorskip("onnx", reason="the ONNX export needs the optional extra: pip install 'bintut[onnx]'")


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
