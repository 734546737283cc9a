"""Issue 5 on the CPU: the device data path trains, compile computes the same loss, torchrun + DDP works.
Issue 19: the fast preset compiles one training and one evaluation graph, whatever the set sizes."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from bintut import binarize_, set_controls
from bintut.config import preset
from bintut.data.device import DeviceBatches
from bintut.data.images import ImageSet
from bintut.files.checkpoint import load_checkpoint
from bintut.training.loop import train
from bintut.training.recipe import build_model, evaluate, loss_fn, steps_per_epoch
from bintut.training.resume import check_resume

from ..conftest import tiny


def test_device_data_path_trains_on_cpu_with_a_message(data_dir, tmp_path, capsys):
    summary = train(tiny(data_dir, tmp_path / "run", epochs=1, data_path="device", augment="reference"))
    assert "without a GPU" in capsys.readouterr().out
    assert summary["epochs"] == 1
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert row["test_images"] == 32 and row["train_loss"] > 0


def test_compiled_step_gives_the_same_loss():
    """torch.compile of a binarizing model: same loss and gradients on the same batch (controls as tensors)."""
    torch.manual_seed(0)
    model = binarize_(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),
    ))
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    model(x)  # in training mode: initialise the running maxima
    model.eval()  # then freeze BN statistics and running maxima, so both passes see the same state
    compiled = torch.compile(model)
    settings = ((0.0, 0.0), (1.0, 1.0), (1.0, 0.5), (0.0, 0.7))  # 0 < p < 1 draws random masks: not compared
    for i, (p, r) in enumerate(settings):
        set_controls(model, p, r)
        losses, grads = [], []
        # after the first compilation, new control values must not recompile (they are tensors)
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            for m in (model, compiled):
                model.zero_grad()
                loss = loss_fn(m(x), y, 0.1)
                loss.backward()
                losses.append(loss.detach())
                grads.append(model[0].parametrizations.weight.original.grad.clone())
        assert torch.allclose(losses[0], losses[1], rtol=1e-4, atol=1e-5), (p, r, losses)
        assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5), (p, r)


def test_fast_preset_is_valid():
    cfg = preset("fast")
    assert cfg.batch_size == 512 and cfg.data_path == "device" and cfg.compile
    assert cfg.schedule("weight_p")(0.15) == 0.0 and cfg.schedule("weight_p")(0.9) == 1.0


def test_fast_preset_compiles_one_training_and_one_evaluation_graph(data_dir, tmp_path, monkeypatch):
    """Two epochs of the fast preset's path (device data, compiled, controls and LR changing every step)
    with 40 training images in batches of 16 and 16 test images in batches of 12: one graph for the
    training step (the last 8 images are dropped), one for evaluation (hard and soft, the last batch
    padded). Backend aot_eager: dynamo's guards -- what decides a recompile -- are inductor's, and it
    compiles in seconds on a CPU (inductor: minutes, docs/fast_training.md)."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("BINTUT_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    out = tmp_path / "fast"
    cfg = preset("fast", device="cpu", amp="off", data="synthetic", data_root=str(data_dir), synthetic_train=40,
                 synthetic_test=16, batch_size=16, eval_batch_size=12, epochs=2, pretrained=False, progress=False,
                 wandb="disabled", out=str(out))
    try:
        train(cfg)
        frames, graphs = counters["frames"]["total"], counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert (frames, graphs) == (2, 2)  # before issue 19: 3 (a dynamic-shape recompile for the last batch of 8)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]  # 40 // 16 whole batches per epoch
    assert all(r["test_images"] == 16 for r in rows)  # every test image counted once, the padding not


def test_a_padded_last_evaluation_batch_gives_the_same_results():
    torch.manual_seed(0)
    model = build_model(preset("smoke", pretrained=False))
    model(torch.randn(8, 3, 32, 32))  # one training-mode pass: running maxima of the activations set
    rng = torch.Generator().manual_seed(1)
    images = ImageSet(torch.randint(0, 256, (20, 32, 32, 3), dtype=torch.uint8, generator=rng).numpy(),
                      torch.randint(0, 100, (20,), generator=rng).numpy(), [])
    loader = DeviceBatches(images, torch.device("cpu"), None).loader(list(range(20)), 8)  # 8, 8, 4
    plain, padded = (evaluate(model, loader, torch.device("cpu"), hard=True, pad=pad) for pad in (False, True))
    assert plain["count"] == padded["count"] == 20 and plain["acc"] == padded["acc"]
    assert abs(plain["loss"] - padded["loss"]) < 1e-5 * max(1.0, plain["loss"])


def test_drop_last_counts_whole_batches_and_refuses_a_set_smaller_than_a_batch():
    assert steps_per_epoch(40, 16, drop_last=True) == 2 and steps_per_epoch(40, 16, drop_last=False) == 3
    with pytest.raises(ValueError, match="no whole batch"):
        steps_per_epoch(10, 16, drop_last=True)
    assert preset("fast").drop_last and not preset("seed").drop_last  # the reference keeps the last batch


def test_a_run_saved_before_drop_last_existed_still_resumes():
    cfg = preset("smoke")
    saved = {k: v for k, v in cfg.to_dict().items() if k != "drop_last"}
    check_resume(cfg, saved)  # no "configuration differs": the missing field had its default
    with pytest.raises(ValueError, match="drop_last"):
        check_resume(cfg.replace(drop_last=True), saved)


def torchrun(*args):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "bintut", "train", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_two_processes_on_gloo(data_dir, tmp_path):
    out = tmp_path / "ddp"
    common = ["--preset", "smoke", "--synthetic-train", "64", "--synthetic-test", "30", "--data-root", str(data_dir),
              "--no-progress", "--wandb", "disabled"]
    result = torchrun(*common, "--epochs", "2", "--batch-size", "16", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # only rank 0 logs
    assert all(r["test_images"] == 30 for r in rows)  # the whole test set, once, across both ranks
    state = load_checkpoint(out / "checkpoint.pt")  # rank 0's checkpoint loads in one process
    model = build_model(preset("smoke", **{k: state["config"][k] for k in ("synthetic_train", "synthetic_test")}))
    model.load_state_dict(state["model"])

    bad = torchrun(*common, "--batch-size", "15", "--out", str(tmp_path / "bad"))
    assert bad.returncode != 0 and "does not split across 2 processes" in bad.stderr
