import contextlib
import subprocess
import sys

import pytest

from bintut.cli import build_parser, main

from .conftest import tiny_cli


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


def test_no_progress_hides_the_bars_but_keeps_the_epoch_line(data_dir, tmp_path, capsys):
    assert main(tiny_cli(data_dir, tmp_path / "run")) == 0
    out, err = capsys.readouterr()
    assert "epoch 1/1: loss" in out and "hard" in out
    assert "it/s" not in err and "%|" not in err  # no tqdm bar


def test_abbreviated_flags_are_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--preset", "smoke", "--epoch", "2"])
    assert info.value.code == 2 and "unrecognized arguments: --epoch" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["[5]", "[1.5]", "[null]", '[[1, [1], 0, 0]]', "[[1, {}, 0, 0]]", "1e999",
                                   "1" + "0" * 400])
def test_a_malformed_schedule_is_one_line_naming_the_field(value, capsys):
    """5a: --weight-p '[5]' (and [1.5], [null], ...) crashed the validator while it built its message."""
    with pytest.raises(SystemExit):
        main(["train", "--preset", "smoke", "--weight-p", value])
    err = capsys.readouterr().err
    assert "error: weight_p: " in err and "Traceback" not in err


@pytest.mark.parametrize("flag, value, message", [
    ("--seed", "-1", "seed must be between 0 and"), ("--seed", str(2**70), "seed must be between 0 and"),
    ("--mixup-alpha", "-0.5", "mixup_alpha must be a finite number above 0"),
    ("--cutmix-alpha", "nan", "cutmix_alpha must be a finite number above 0"),
    ("--epochs", "1" + "0" * 30, "epochs must be between 1 and"),
    ("--synthetic-train", str(10**12), "synthetic_train must be between 1 and"),
    ("--out", "r" * 300, "--out: the name rrr"),
])
def test_values_out_of_range_are_one_line_before_any_work(flag, value, message, tmp_path, monkeypatch, capsys):
    """5f: --seed -1 or huge seeds, a negative mixup alpha, huge integers, a 300-character --out: tracebacks."""
    monkeypatch.chdir(tmp_path)
    with contextlib.suppress(SystemExit):
        assert main(["train", "--preset", "smoke", "--data-root", str(tmp_path / "data"), flag, value]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_rejects_a_malformed_override(capsys):
    from bintut.cli import main

    assert main(["record", "--mode", "smoke", "--data", "synthetic", "--set", "epochs"]) == 2
    assert "bintut: error: --set wants FIELD=VALUE" in capsys.readouterr().err
