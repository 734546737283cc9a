import json
import signal
import sys

import pytest
import torch

from bintut.config import preset
from bintut.files.checkpoint import load_checkpoint
from bintut.files.metrics import read_metrics
from bintut.quant import is_fully_binary
from bintut.training import loop as train_mod
from bintut.training import recipe
from bintut.training.guard import Diverged
from bintut.training.loop import train
from bintut.training.recipe import build_model

from ..conftest import tiny
from .conftest import small

TIMING = {"epoch_seconds", "train_images_per_s", "deployed_seconds"}


def rows(out):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_smoke_preset_learns_and_ends_fully_binary(smoke_run):
    out = smoke_run.out
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "results.png"} <= {p.name for p in out.iterdir()}
    last = rows(out)[-1]
    assert last["epoch"] == smoke_run.config.epochs == 3
    assert last["weights.p"] == last["weights.bin_ratio"] == last["activations.p"] == 1.0
    assert last["hard_acc"] == last["soft_acc"]
    assert last["hard_acc"] >= 0.05, f"{last['hard_acc']:.3f} is not well above chance (0.01)"
    assert is_fully_binary(smoke_run.model)  # load_run restores the end-of-training controls


def test_init_from_starts_at_another_runs_weights(data_dir, tmp_path):
    first = tiny(data_dir, tmp_path / "first", epochs=1)
    train(first)
    cfg = tiny(data_dir, tmp_path / "second", epochs=1, init_from=str(tmp_path / "first"))
    model = build_model(cfg)
    source = load_checkpoint(tmp_path / "first" / "checkpoint.pt")["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.items())
    with pytest.raises(FileNotFoundError, match="init_from: no checkpoint"):
        build_model(cfg.replace(init_from=str(tmp_path / "nowhere")))


def test_resume_after_a_signal_equals_an_uninterrupted_run(data_dir, tmp_path, monkeypatch):
    straight = tiny(data_dir, tmp_path / "straight")
    train(straight)

    calls = {"n": 0}
    real_loss = recipe.loss_fn

    def loss_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 2, first batch: Ctrl-C arrives mid-step
            signal.raise_signal(signal.SIGINT)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(recipe, "loss_fn", loss_then_signal)
    stopped = tiny(data_dir, tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(stopped)
    state = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 1)  # the interrupted step completed first
    monkeypatch.setattr(recipe, "loss_fn", real_loss)
    with pytest.raises(FileExistsError, match="--resume"):
        train(stopped)
    train(stopped.replace(resume=True))

    assert rows(tmp_path / "resumed") == rows(tmp_path / "straight")
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_recipe(data_dir, tmp_path):
    cfg = tiny(data_dir, tmp_path / "run", epochs=1)
    train(cfg)
    with pytest.raises(ValueError, match="lr"):
        train(cfg.replace(resume=True, lr=[[1.0, "stay", 1e-3, 1e-3]]))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = recipe.loss_fn

    def nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(recipe, "loss_fn", nan_in_epoch_two)
    cfg = tiny(data_dir, tmp_path / "run")
    with pytest.raises(Diverged, match="diverged.*epoch 2.*last good checkpoint"):
        train(cfg)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(rows(tmp_path / "run")) == 1


def test_checkpoint_is_weights_only_loadable(data_dir, tmp_path):
    train(tiny(data_dir, tmp_path / "run", epochs=1))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["config"]["epochs"] == 1


def test_wandb_failure_never_stops_training(data_dir, tmp_path, monkeypatch):
    import types

    broken = types.ModuleType("wandb")

    def init(**kwargs):
        raise RuntimeError("wandb is broken")

    broken.init = init
    monkeypatch.setitem(sys.modules, "wandb", broken)
    with pytest.warns(UserWarning, match="wandb could not start"):
        summary = train(tiny(data_dir, tmp_path / "run", epochs=1, wandb="offline"))
    assert summary["epochs"] == 1


def test_resuming_a_finished_run_changes_nothing(data_dir, tmp_path):
    cfg = tiny(data_dir, tmp_path / "run", epochs=1, resume=True)
    first = train(cfg)
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    again = train(cfg)  # what `make smoke` / `make reproduce` do when run twice
    assert again["hard_acc"] == first["hard_acc"]
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_stop_after_nan_without_per_step_sync_keeps_the_good_checkpoint(data_dir, tmp_path, monkeypatch):
    """The GPU loop reads no loss per step; a stop signal after a NaN used to save the NaN model."""
    calls = {"n": 0}
    real_loss = recipe.loss_fn

    def nan_then_signal(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        if calls["n"] == 3:  # epoch 2, first batch: the loss turns NaN and Ctrl-C arrives in the same step
            signal.raise_signal(signal.SIGINT)
            return loss * float("nan")
        return loss

    monkeypatch.setattr(recipe, "loss_fn", nan_then_signal)
    with pytest.raises(Diverged, match="loss became nan by epoch 2, batch 1; the last good checkpoint"):
        train(small(data_dir, tmp_path / "run"), synced=lambda device: False)  # the GPU path, on the CPU
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 0)  # not overwritten by the stop
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]


def test_skipped_optimizer_steps_are_counted_in_the_metrics(data_dir, tmp_path, monkeypatch):
    """5i: with fp16 + GradScaler, steps skipped for inf/NaN gradients were reported nowhere."""
    import torch

    from bintut.files.metrics import read_metrics
    from bintut.training import recipe

    from ..conftest import tiny

    real_scaler, real_loss = torch.amp.GradScaler, recipe.loss_fn
    monkeypatch.setattr(train_mod.torch.amp, "GradScaler", lambda device, enabled: real_scaler(device, enabled=True))
    calls = {"n": 0}

    class InfGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("inf")

    def loss_with_one_inf_gradient(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return InfGradient.apply(loss) if calls["n"] == 2 else loss  # the loss stays finite, the step is skipped

    monkeypatch.setattr(recipe, "loss_fn", loss_with_one_inf_gradient)
    cfg = tiny(data_dir, tmp_path / "run", synthetic_train=16, synthetic_test=8, batch_size=8, eval_batch_size=8,
               mix_prob=0.0, epochs=2)
    train_mod.train(cfg)
    assert [row["skipped_steps"] for row in read_metrics(tmp_path / "run")] == [1, 0]


def test_results_figure_names_the_data_set(data_dir, tmp_path):
    from bintut.training.plots import plot_run as real

    titles = []

    def plot_run(rows, path, data=None):
        fig = real(rows, path, data=data)
        titles.append(fig._suptitle.get_text() if fig._suptitle else "")
        return fig

    cfg = preset("smoke", data_root=str(data_dir), out=str(tmp_path / "run"), synthetic_train=32, synthetic_test=16,
                 batch_size=16, eval_batch_size=16, epochs=1, wandb="disabled", progress=False, resume=True)
    assert train(cfg, plot=plot_run)["epochs"] == 1
    assert titles == ["data: synthetic data made offline (32 training images)"]
    assert (tmp_path / "run" / "results.png").is_file()
