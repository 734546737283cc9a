"""Notebook 09's stage: binary activations fine-tuned from the ``both`` stage, and what each choice of int8 layers
costs. Not a training stage of the CLI: a short loop here (AdamW, the run's loss, its training images), with the
binary quantizers' ``p = bin_ratio`` on the smoke ramp of notebook 03 (a cosine to 1 over 75 % of the steps, then 1).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from bintut.binact import KEEP_INT8, binarize_activations_, set_binary_controls
from bintut.data.choice import load_data
from bintut.data.transforms import ImageDataset
from bintut.integer.kernels import im2col, pack_signs
from bintut.integer.xnor import xnor_gemm
from bintut.schedule import Schedule
from bintut.training.recipe import evaluate, loss_fn
from bintut.training.runs import Run

# Optimizer steps of each fine-tune per mode: seconds in smoke mode; workshop: as many as a workshop stage takes
# (4 epochs of 2,000 Fashion-MNIST images at batch 128); full: about 8 epochs of CIFAR-100 at batch 128. Not tuned.
STEPS = {"smoke": 4, "workshop": 60, "full": 3000}
BINARY_RAMP = Schedule([[0.75, "cosine", 0.0, 1.0], [1.0, "stay", 1.0, 1.0]], "binary activations p = bin_ratio")
KEEPS = {"stem and head int8": KEEP_INT8, "head int8": ("fc",), "none int8": ()}


def _loaders(run: Run, seed: int) -> tuple[DataLoader, DataLoader]:
    cfg = run.config
    train_set, test_set = load_data(cfg)
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(ImageDataset(train_set), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                       generator=generator)
    return train, DataLoader(ImageDataset(test_set), batch_size=cfg.eval_batch_size)


def fine_tune(run: Run, steps: int, keep: tuple[str, ...] = KEEP_INT8, lr: float = 1e-4,
              seed: int = 0) -> dict[str, Any]:
    """A copy of ``run``'s model (the ``both`` stage: binary weights, int8 inputs) with binary activations on every
    layer not in ``keep``, trained ``steps`` optimizer steps while p = bin_ratio of the binary quantizers follow
    :data:`BINARY_RAMP`. Returns {"model", "history": [{"step", "p", "loss"}], "hard %": test accuracy with every
    quantizer at 1}. Raises ValueError for ``steps < 1`` (and as :func:`bintut.binact.binarize_activations_`).
    Taught in notebooks/09_binary_activations.ipynb."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    torch.manual_seed(seed)
    model = copy.deepcopy(run.model)
    binarize_activations_(model, keep)
    device = next(model.parameters()).device
    train, test = _loaders(run, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    history, step = [], 0
    model.train()
    while step < steps:
        for x, y in train:
            p = BINARY_RAMP(step / steps)
            set_binary_controls(model, p, p)
            loss = loss_fn(model(x.to(device)), y.to(device), run.config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append({"step": step + 1, "p": p, "loss": float(loss.detach())})
            step += 1
            if step == steps:
                break
    set_binary_controls(model, 1.0, 1.0)
    model.eval()
    return {"model": model, "history": history, "hard %": 100 * evaluate(model, test, device, hard=True)["acc"]}


def compare_int8_layers(run: Run, steps: int, keeps: dict[str, tuple[str, ...]] = KEEPS,
                        seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, list[dict]]]:
    """The ``both`` run's hard accuracy beside one :func:`fine_tune` per choice of layers kept in int8 (same steps,
    same seed). Returns the table's rows and each fine-tune's history. Raises ValueError for ``steps < 1``.
    Taught in notebooks/09_binary_activations.ipynb."""
    _, test = _loaders(run, seed)
    device = next(run.model.parameters()).device
    start = 100 * evaluate(run.model, test, device, hard=True)["acc"]
    rows = [{"network": "binary weights + int8 inputs (both stage)", "int8 inputs": "all 21", "steps": 0,
             "hard %": round(start, 1)}]
    histories = {}
    for label, keep in keeps.items():
        result = fine_tune(run, steps, keep, seed=seed)
        rows.append({"network": f"+ binary inputs, {label}", "int8 inputs": ", ".join(keep) or "none",
                     "steps": steps, "hard %": round(result["hard %"], 1)})
        histories[label] = result["history"]
    return rows, histories


def binary_conv_identity(channels: int = 16, size: int = 6, out_channels: int = 8, seed: int = 1) -> dict[str, Any]:
    """A 3x3 conv (zero padding) of the two-level input ``1 + b`` (b = ±1 signs): torch's float conv against
    ``sum w + xnor_gemm(b, w)`` with each padded tap read as b = -1. Returns both accumulators
    (out_channels, size, size) int64 and whether they are equal. Taught in notebooks/09_binary_activations.ipynb."""
    rng = np.random.default_rng(seed)
    b = np.where(rng.random((1, size, size, channels)) < 0.5, -1, 1).astype(np.int16)  # NHWC signs
    w = np.where(rng.random((out_channels, channels, 3, 3)) < 0.5, -1, 1).astype(np.int8)
    levels = torch.from_numpy((1 + b).transpose(0, 3, 1, 2).astype(np.float32))
    torch_acc = torch.nn.functional.conv2d(levels, torch.from_numpy(w.astype(np.float32)), padding=1)[0]
    w_rows = w.transpose(0, 2, 3, 1).reshape(out_channels, -1)
    signs = im2col(1 + b, 3, 1, 1) - 1  # zero-padded levels 1 + b: a padded tap is b = -1
    acc = w_rows.sum(axis=1, dtype=np.int64) + xnor_gemm(pack_signs(signs), pack_signs(w_rows), signs.shape[1])
    xnor = acc.reshape(size, size, out_channels).transpose(2, 0, 1)
    torch_int = torch_acc.numpy().astype(np.int64)
    return {"torch": torch_int, "xnor": xnor, "equal": bool(np.array_equal(torch_int, xnor))}
