"""python -m bintut record: the stages' configurations, what a recording holds, and the committed recording."""

from __future__ import annotations

import json

import pytest

from bintut.teaching import record
from bintut.teaching.record import (
    RECORD_STAGES,
    RecordingError,
    cost_points,
    load_recording,
    published_rows,
    record_configs,
    recorded_rows,
)

RAMP = [[0.5, "cosine", 0.0, 1.0], [1.0, "stay", 1.0, 1.0]]


def test_stage_configs_share_the_recipe_and_start_from_their_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path))
    configs = record_configs("smoke", "synthetic", RAMP, baseline_epochs=3, train_subset=20, epochs=2)
    assert list(configs) == list(RECORD_STAGES)
    base = configs["baseline"]
    assert base.epochs == 3 and base.train_subset == 20 and base.schedule("weight_p")(1.0) == 0.0
    from bintut.training.runs import run_name

    for stage in RECORD_STAGES[1:]:
        cfg = configs[stage]
        assert cfg.epochs == 2 and cfg.train_subset == 20
        assert cfg.init_from == str(tmp_path / run_name(base, "baseline"))  # this baseline, with the overrides
        assert (cfg.weight_p == RAMP) == (stage in ("weights", "both"))
        assert (cfg.act_p == RAMP) == (stage in ("activations", "both"))
    assert list(tmp_path.iterdir()) == []  # nothing trained yet


def _fake_training(cfg, label):
    """Stands in for runs.load_or_train: a run folder with metrics, config and a checkpoint."""
    from bintut.training.runs import run_name, runs_dir

    out = runs_dir() / run_name(cfg, label)
    out.mkdir(parents=True)
    rows = [{"epoch": e, "hard_acc": 0.1 * e, "soft_acc": 0.2 * e, "train_loss": 1.0, "lr": 1e-3,
             "weights.p": 1.0 if label in ("weights", "both") else 0.0} for e in (1, 2)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "config.json").write_text(cfg.to_json())
    (out / "checkpoint.pt").write_bytes(b"not copied")


def test_a_recording_holds_metrics_configs_and_provenance_not_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(record, "load_or_train", _fake_training)
    configs = record_configs("smoke", "synthetic", train_subset=20)
    folder = record.record(configs, tmp_path / "recorded", "python -m bintut record --mode smoke")
    assert folder == tmp_path / "recorded" / "synthetic"
    for stage in RECORD_STAGES:
        assert sorted(p.name for p in (folder / stage).iterdir()) == ["config.json", "metrics.jsonl"]
    provenance = json.loads((folder / "provenance.json").read_text())
    assert {"command", "machine", "date", "commit", "torch", "stages"} <= set(provenance)
    assert provenance["command"] == "python -m bintut record --mode smoke" and provenance["data"] == "synthetic data"
    assert provenance["machine"].startswith(("CPU", "GPU"))
    rec = load_recording("synthetic", tmp_path / "recorded")
    assert rec.final("both") == pytest.approx(20.0) and rec.final("baseline", "soft_acc") == pytest.approx(40.0)
    assert cost_points(rec) == {"weights": 0.0, "activations": 0.0, "both": 0.0}
    rows = recorded_rows(rec) + published_rows()
    assert [r["data"] for r in rows] == ["synthetic data"] * 4 + ["CIFAR-100"] * 2
    assert all(r["comparable to published"].startswith("no: other data") for r in rows[:4])


def test_a_missing_recording_says_how_to_make_one(tmp_path):
    with pytest.raises(RecordingError, match="python -m bintut record --data fashion-mnist"):
        load_recording("fashion-mnist", tmp_path)


def test_the_command_line_rejects_a_malformed_override(capsys):
    from bintut.cli import main

    assert main(["record", "--mode", "smoke", "--data", "synthetic", "--set", "epochs"]) == 2
    assert "bintut: error: --set wants FIELD=VALUE" in capsys.readouterr().err


def test_the_committed_recording_is_fashion_mnist_with_its_provenance():
    rec = load_recording("fashion-mnist")
    assert list(rec.metrics) == list(RECORD_STAGES) and rec.data == "Fashion-MNIST"
    assert all(cfg["data"] == "fashion-mnist" for cfg in rec.configs.values())
    command = rec.provenance["command"]
    assert command.startswith("python -m bintut record") and "--data fashion-mnist" in command
    for stage in RECORD_STAGES[1:]:  # each binarizing stage ends fully binarized in what it trains
        last = rec.metrics[stage][-1]
        assert last.get("weights.p", 0.0) == (1.0 if stage in ("weights", "both") else 0.0)
        assert last.get("activations.p", 0.0) == (1.0 if stage in ("activations", "both") else 0.0)


def test_the_recorded_figures_draw_from_the_committed_metrics():
    import matplotlib

    matplotlib.use("Agg")
    from bintut.teaching.viz import recorded

    rec = load_recording("fashion-mnist")
    for figure in (recorded.plot_recorded_baseline(rec), recorded.plot_recorded_stage(rec, "weights"),
                   recorded.plot_recorded_stage(rec, "both"), recorded.plot_recorded_costs(rec)):
        assert rec.data in figure.axes[0].get_title()  # labelled with its data set, never "CIFAR-100"
        assert "CIFAR" not in figure.axes[0].get_title()
    costs = recorded.plot_recorded_costs(rec).axes[0].containers[0].datavalues.tolist()
    assert costs == [cost_points(rec)[s] for s in ("activations", "weights", "both")]
