import pytest

from bintut.data import fashion_mnist
from bintut.teaching.stages import MODES, STAGES, mode_line, resolve_mode, stage_config


@pytest.fixture(autouse=True)
def no_real_data(tmp_path, monkeypatch):
    """Every test starts on a machine without CIFAR-100 or Fashion-MNIST, whatever this one has installed."""
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path / "no-data"))
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "no-debian-package")


def fake_debian_package(folder, monkeypatch):
    """The Debian package's four file names (the mode choice looks at names only, reads nothing)."""
    folder.mkdir(parents=True)
    for name, _ in fashion_mnist.datasets.FashionMNIST.resources:
        (folder / name).write_bytes(b"")
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", folder)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_a_valid_config_without_training(stage, mode, tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path))
    cfg = stage_config(stage, mode)
    weights_binary = ("weights", "both", "reference", "abrupt", "p-only")
    acts_binary = ("activations", "both", "reference", "abrupt", "p-only")
    assert cfg.schedule("weight_p")(1.0) == (1.0 if stage in weights_binary else 0.0)
    assert cfg.schedule("act_p")(1.0) == (1.0 if stage in acts_binary else 0.0)
    ratio_only = stage == "ratio-only"  # p stays 0, bin_ratio alone ends at 1
    assert cfg.schedule("weight_ratio")(1.0) == (1.0 if stage in weights_binary[:4] or ratio_only else 0.0)
    if stage == "abrupt":  # the control: fully binary from the first step
        assert {cfg.schedule(c)(0.0) for c in ("weight_p", "weight_ratio", "act_p", "act_ratio")} == {1.0}
    if stage in ("baseline", "reference"):
        assert cfg.init_from is None
    else:
        assert cfg.init_from.startswith(str(tmp_path)) and "baseline" in cfg.init_from
    assert list(tmp_path.iterdir()) == []  # nothing was trained
    assert cfg.data == ("synthetic" if mode == "smoke" else "cifar100")


def test_mode_switch(monkeypatch):
    monkeypatch.setenv("BINTUT_MODE", "smoke")
    assert resolve_mode(None) == "smoke" and resolve_mode("workshop") == "workshop"
    with pytest.raises(ValueError, match="mode must be one of"):
        resolve_mode("turbo")
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_config("finetune", "smoke")


def _run(stage, mode, tmp_path, metrics):
    from bintut.training.runs import Run

    return Run(model=None, metrics=metrics, out=tmp_path / f"{stage}-run", config=stage_config(stage, mode))


ROW = {"hard_acc": 0.5, "soft_acc": 0.6, "weights.p": 1.0, "activations.p": 1.0, "train_loss": 1.0, "lr": 1e-5}


@pytest.mark.parametrize("mode", MODES)
def test_only_the_full_reference_stage_is_comparable_with_the_published_numbers(mode, tmp_path, monkeypatch):
    from bintut.teaching.stages import results_table

    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path))
    runs = {s: _run(s, mode, tmp_path, [{**ROW, "epoch": stage_config(s, mode).epochs}]) for s in STAGES}
    rows = {r["stage"]: r for r in results_table(runs)}
    for stage in ("baseline", "weights", "activations", "both"):
        assert rows[stage]["comparable to published"].startswith("no: a tutorial stage")
    assert rows["reference"]["comparable to published"].startswith("yes" if mode == "full" else "no")
    assert rows["activations"]["trains"] == "fp weights, int8 activations"


def test_reference_comparison_reads_the_end_of_the_fp_phase(tmp_path, monkeypatch):
    from bintut.teaching.stages import reference_comparison

    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path))
    metrics = [{**ROW, "epoch": e, "soft_acc": e / 1000, "weights.p": 0.0 if e <= 60 else 0.5,
                "activations.p": 0.0 if e <= 60 else 0.5} for e in range(1, 301)]
    fp, binary = reference_comparison(_run("reference", "full", tmp_path, metrics))
    ours = [k for k in fp if k.startswith("this run")][0]
    assert fp["published (epoch)"] == "76.7 % (60)" and fp[ours] == "6.0 % (epoch 60)"
    assert binary["published (epoch)"] == "74.3 % (300)" and binary[ours] == "50.0 % (epoch 300)"
    assert binary["comparable"].startswith("yes")
    smoke = reference_comparison(_run("reference", "smoke", tmp_path, [{**ROW, "epoch": 1}, {**ROW, "epoch": 2}]))
    assert "no epoch with both controls at 0" in smoke[0][[k for k in smoke[0] if k.startswith("this run")][0]]
    assert smoke[0]["comparable"] == "no: synthetic data"


def test_a_missing_data_set_tells_notebook_readers_about_smoke_mode(tmp_path, monkeypatch):
    from bintut.data.images import DataNotFoundError
    from bintut.teaching.stages import run_stage

    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path / "nothing"))
    with pytest.raises(DataNotFoundError, match='^Set mode = "smoke" in the parameters cell') as info:
        run_stage("baseline", "workshop")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one traceback, not two


def test_workshop_without_cifar100_takes_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    fake_debian_package(tmp_path / "debian", monkeypatch)
    cfg = stage_config("both", "workshop")
    assert cfg.data == "fashion-mnist" and cfg.train_subset == 2000 and not cfg.pretrained
    assert stage_config("both", "workshop", data="cifar100").data == "cifar100"  # asked for: kept
    line = mode_line("workshop")
    assert line.startswith("running in workshop mode on Fashion-MNIST") and "\n" not in line


def test_the_default_mode_never_fails_offline(monkeypatch):
    monkeypatch.delenv("BINTUT_MODE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_mode(None) == "smoke"  # no real data here: smoke, and one line says why
    assert "no CIFAR-100 or Fashion-MNIST found here" in mode_line("smoke")
    assert resolve_mode(None, fallback=False) == "workshop"


def test_the_default_mode_takes_fashion_mnist_when_present(tmp_path, monkeypatch):
    monkeypatch.delenv("BINTUT_MODE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    fake_debian_package(tmp_path / "debian", monkeypatch)
    assert resolve_mode(None) == "workshop"
