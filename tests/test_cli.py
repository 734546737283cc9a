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
