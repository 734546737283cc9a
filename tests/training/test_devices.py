"""Issue 5 on the CPU: the device data path trains, compile computes the same loss, torchrun + DDP works.
Issue 19: the fast preset compiles one training and one evaluation graph, whatever the set sizes."""

import json
import subprocess
import sys

import pytest
import torch

from bintut.config import preset
from bintut.files.checkpoint import load_checkpoint
from bintut.training.loop import train
from bintut.training.recipe import build_model

from ..conftest import tiny


def test_device_data_path_trains_on_cpu_with_a_message(data_dir, tmp_path, capsys):
    summary = train(tiny(data_dir, tmp_path / "run", epochs=1, data_path="device", augment="reference"))
    assert "without a GPU" in capsys.readouterr().out
    assert summary["epochs"] == 1
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert row["test_images"] == 32 and row["train_loss"] > 0


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
