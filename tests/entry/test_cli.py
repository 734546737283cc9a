import subprocess
import sys

import pytest

from bintut.cli import build_parser, main


def test_help_explains_presets(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for words in ("--preset", "smoke", "workshop", "--data", "synthetic", "--resume", "--epochs", "--out",
                  "--no-pretrained", "--weight-p"):
        assert words in text


def test_overrides_parse_to_config_types():
    args = vars(build_parser().parse_args(
        ["train", "--preset", "smoke", "--epochs", "2", "--no-progress", "--lr", '[[1.0, "stay", 0.01, 0.01]]']
    ))
    assert args == {"command": "train", "preset": "smoke", "epochs": 2, "progress": False,
                    "lr": [[1.0, "stay", 0.01, 0.01]]}


def test_bad_values_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--preset", "smoke", "--weight-p", '[[0.5, "linear", 0, 1]]'])
    assert info.value.code == 2
    assert "last phase must end at t = 1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--lr", "not json"])
    assert "not a JSON phase list" in capsys.readouterr().err


def test_missing_cifar_fails_fast_naming_the_synthetic_option(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bintut", "train", "--preset", "workshop", "--data-root", str(tmp_path),
         "--out", str(tmp_path / "run"), "--wandb", "disabled"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "CIFAR-100 was not found" in result.stderr and "--data synthetic" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # failed before writing anything


@pytest.mark.slow
def test_export_command_reports_sizes(smoke_run, tmp_path, capsys):
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz")]) == 0
    text = capsys.readouterr().out
    assert "555,468,800" in text and "bytes on disk" in text and (tmp_path / "m.npz").is_file()
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def _tiny_cli(data_dir, out) -> list[str]:
    """A seconds-long smoke run through the command line: one epoch on 32 synthetic images."""
    return ["train", "--preset", "smoke", "--data-root", str(data_dir), "--out", str(out), "--synthetic-train", "32",
            "--synthetic-test", "16", "--batch-size", "16", "--eval-batch-size", "16", "--epochs", "1",
            "--wandb", "disabled", "--no-progress", "--resume"]


def test_no_progress_hides_the_bars_but_keeps_the_epoch_line(data_dir, tmp_path, capsys):
    assert main(_tiny_cli(data_dir, tmp_path / "run")) == 0
    out, err = capsys.readouterr()
    assert "epoch 1/1: loss" in out and "hard" in out
    assert "it/s" not in err and "%|" not in err  # no tqdm bar


def test_rerunning_a_finished_run_says_so_and_trains_nothing(data_dir, tmp_path, capsys, monkeypatch):
    from bintut.training import loop

    assert main(_tiny_cli(data_dir, tmp_path / "run")) == 0
    capsys.readouterr()
    checkpoint = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns

    def no_loading(cfg):
        raise AssertionError("a finished run loaded its data again")

    monkeypatch.setattr(loop, "load_data", no_loading)
    assert main(_tiny_cli(data_dir, tmp_path / "run")) == 0  # `make smoke` twice
    out = capsys.readouterr().out
    assert "has already finished its 1 epochs; nothing to train" in out and "resuming" not in out
    assert "bintut: nothing to do. final hard accuracy" in out
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == checkpoint


def test_results_figure_names_the_data_set(data_dir, tmp_path, monkeypatch):
    from bintut.training import loop as train_mod

    titles = []

    def plot_run(rows, path, data=None):
        fig = real(rows, path, data=data)
        titles.append(fig._suptitle.get_text() if fig._suptitle else "")
        return fig

    real = train_mod.plot_run
    monkeypatch.setattr(train_mod, "plot_run", plot_run)
    assert main(_tiny_cli(data_dir, tmp_path / "run")) == 0
    assert titles == ["data: synthetic data made offline (32 training images)"]
    assert (tmp_path / "run" / "results.png").is_file()


def test_reproduce_offline_points_to_commands_that_work(tmp_path, monkeypatch, capsys):
    """Offline, reproduce ends with advice it does not itself reject: Debian's Fashion-MNIST, make smoke, and the
    ImageNet weights (every `python -m bintut` command in it parses and makes a valid config)."""
    import shlex
    from pathlib import Path

    import torch

    from bintut import commands
    from bintut.config import preset
    from bintut.data.cifar100 import _missing_message
    from bintut.data.images import DataNotFoundError

    def offline(cfg):
        raise DataNotFoundError(_missing_message(Path("data"), "could not be downloaded (no network)", True))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(commands, "fashion_mnist_found", lambda root=None: False)  # nothing here at all
    monkeypatch.setattr(commands, "train", offline)
    assert main(["reproduce"]) == 2
    err = capsys.readouterr().err
    assert "make smoke" in err and "--no-pretrained" in err and "resnet18.a1_in1k" in err
    assert "apt-get install dataset-fashion-mnist" in err
    commands = [line.split("python -m bintut ", 1)[1] for line in err.splitlines() if "python -m bintut " in line]
    for command in commands:
        args = vars(build_parser().parse_args(shlex.split(command)))
        args.pop("command")
        preset(args.pop("preset"), **args)  # raises ValueError on a value reproduce's advice must not give


@pytest.mark.parametrize("cifar, fashion, data", [(True, True, "cifar100"), (False, True, "fashion-mnist"),
                                                  (False, False, "cifar100")])
def test_reproduce_takes_cifar100_else_fashion_mnist_and_says_which(monkeypatch, capsys, cifar, fashion, data):
    import torch

    from bintut import commands
    from bintut.config import preset

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(commands, "cifar100_found", lambda root=None: cifar)
    monkeypatch.setattr(commands, "fashion_mnist_found", lambda root=None: fashion)
    settings = commands.reproduce_settings()
    cfg = preset(settings.pop("preset"), **settings)
    out = capsys.readouterr().out
    assert cfg.data == data and cfg.preset == "workshop"
    if data == "fashion-mnist":  # the recipe of workshop mode on Fashion-MNIST: random weights, a subset
        assert not cfg.pretrained and cfg.train_subset == 2000 and "Fashion-MNIST is here" in out
        assert cfg.out == "results/workshop-fashion-mnist"
    else:
        assert "data: CIFAR-100" in out and cfg.download
