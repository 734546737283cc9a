"""Each command of ``python -m bintut`` under the one error policy: a bad input is one line and exit 2, a flag
error prints the usage of the command it belongs to, and ``train`` without a preset starts nothing."""

from __future__ import annotations

import pytest

from bintut.cli import TRAIN_HINT, main


def _usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_train_without_arguments_prints_its_usage_and_the_presets_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    usage, hint = err.splitlines()
    assert usage.startswith("usage: python -m bintut train [-h] --preset {fast,seed,smoke,workshop}")
    assert hint == TRAIN_HINT and "300-epoch" in hint and "--preset smoke" in hint
    assert list(tmp_path.iterdir()) == []  # no ./results, no run folder
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "2"]) == 2  # flags, but no preset
    assert capsys.readouterr().err.splitlines()[1] == TRAIN_HINT and not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "smoke", "--epoch", "3"], "unrecognized arguments: --epoch 3"),  # argparse's own
    (["train", "--preset", "smoke", "--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
    (["train", "--preset", "smoke", "--epochs", "0"], "epochs must be at least 1, got 0"),  # the config's check
    (["train", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
])
def test_a_train_flag_error_prints_trains_usage_line(argv, message, capsys):
    err = _usage_error(capsys, argv)
    assert err.startswith("usage: python -m bintut train [-h] --preset")
    assert f"python -m bintut train: error: {message}" in err
    assert "{train,export,reproduce,record,clean}" not in err  # not the top-level usage


@pytest.mark.parametrize("argv, message", [
    (["export", "run", "--golden", "0"], "--golden must be between 1 and"),
    (["export", "run", "--out", " "], "--out is empty"),
    (["export", "run", "--colour"], "unrecognized arguments: --colour"),
    (["record", "--stages", "x", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_other_commands_flag_errors_print_their_own_usage(argv, message, capsys):
    err = _usage_error(capsys, argv)
    assert err.startswith(f"usage: python -m bintut {argv[0]} ") and message in err


def test_each_command_reports_a_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "cache"))
    cases = {
        "train": ["train", "--preset", "workshop", "--data-root", str(tmp_path / "nodata"), "--out",
                  str(tmp_path / "run"), "--wandb", "disabled"],  # no CIFAR-100 there
        "export": ["export", str(tmp_path / "no-such-run")],
        "record": ["record", "--mode", "smoke", "--data", "synthetic", "--set", 'epochs="x"', "--out",
                   str(tmp_path / "rec")],
        "record-stage": ["record", "--mode", "smoke", "--data", "synthetic", "--stages", "nonsense", "--out",
                         str(tmp_path / "rec")],
    }
    for name, argv in cases.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("bintut: error: ") and err.count("\n") == 1 and "Traceback" not in err, (name, err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "rec").exists()
