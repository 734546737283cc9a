"""bintut.training.guard: divergence is found in the loss and in the weights."""

from __future__ import annotations

import pytest
import torch

from bintut.training import guard, recipe
from bintut.training.guard import Diverged
from bintut.training.loop import train

from .conftest import small


def test_exploding_weights_stop_the_run_though_the_loss_is_finite(data_dir, tmp_path):
    real_step = recipe.train_step
    calls = {"n": 0}

    def step_then_explode(model, *args, **kwargs):
        loss = real_step(model, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # after the epoch's last loss: only the weights can tell
            with torch.no_grad():
                model.fc.bias[0] = 3e5
        return loss

    with pytest.raises(Diverged, match="fc.bias exploded \\(\\|w\\| up to 3e\\+05.*no checkpoint was written yet"):
        train(small(data_dir, tmp_path / "run", epochs=1), step=step_then_explode)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_non_finite_weights_are_divergence():
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    assert guard._weights_problem(net) == "weight became non-finite"
