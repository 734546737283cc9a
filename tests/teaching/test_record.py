"""python -m bintut record: the stages' configurations, what a recording holds, and the committed recording."""

from __future__ import annotations

import json

import pytest

from bintut.teaching import record
from bintut.teaching.lesson import cost_points
from bintut.teaching.record import (
    RECORD_STAGES,
    RecordingError,
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
        assert (cfg.weight_p == RAMP) == (stage in ("weights", "both", "p-only"))
        assert (cfg.weight_ratio == RAMP) == (stage in ("weights", "both", "ratio-only"))
        assert (cfg.act_p == RAMP) == (stage in ("activations", "both", "p-only"))
        assert (cfg.act_ratio == RAMP) == (stage in ("activations", "both", "ratio-only"))
        on = [[1.0, "stay", 1.0, 1.0]]
        assert (cfg.weight_p == cfg.act_ratio == on) == (stage == "abrupt")  # the control: binary from step 1
        final = {name: cfg.schedule(name)(1.0) for name in ("weight_p", "weight_ratio", "act_p", "act_ratio")}
        # each control stage ends fully binary (p = 1 sprinkles every entry; bin_ratio = 1 blends all the way) ...
        binary = {target: 1.0 in (final[f"{target}_p"], final[f"{target}_ratio"]) for target in ("weight", "act")}
        if stage in ("both", "abrupt", "p-only", "ratio-only"):
            assert binary == {"weight": True, "act": True}
        assert (set(final.values()) == {0.0}) == (stage == "fp-continued")  # ... the reference never quantizes
    assert list(tmp_path.iterdir()) == []  # nothing trained yet


def test_stages_are_chosen_and_ordered_and_unknown_ones_named(tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path))
    configs = record_configs("smoke", "synthetic", stages=("abrupt", "both"))
    assert list(configs) == ["baseline", "abrupt", "both"]  # the baseline first, then as asked
    with pytest.raises(ValueError, match="unknown stage.*'gradual'"):
        record_configs("smoke", "synthetic", stages=("gradual",))
    assert record.parse_seeds("0,1,2") == (0, 1, 2)
    for bad in ("", "0,0", "-1", "a"):
        with pytest.raises(ValueError, match="--seeds"):
            record.parse_seeds(bad)


def _fake_training(cfg, label):
    """Stands in for runs.load_or_train: a run folder with metrics, config and a checkpoint."""
    from bintut.training.runs import run_name, runs_dir

    out = runs_dir() / run_name(cfg, label)
    if out.exists():  # finished before: load_or_train loads it
        return
    out.mkdir(parents=True)
    rows = [{"epoch": e, "hard_acc": 0.1 * e, "soft_acc": 0.2 * e, "train_loss": 1.0, "lr": 1e-3, "test_images": 16,
             "weights.p": 1.0 if label in ("weights", "both") else 0.0} for e in (1, 2)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "config.json").write_text(cfg.to_json())
    from bintut.files.checkpoint import save_checkpoint

    save_checkpoint(out / "checkpoint.pt", {"epoch": cfg.epochs})  # a finished run (never copied)


def test_a_recording_holds_metrics_configs_and_provenance_not_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    configs = record_configs("smoke", "synthetic", stages=("weights", "both", "abrupt"), train_subset=20)
    folder = record.record(configs, tmp_path / "recorded", "python -m bintut record --mode smoke", seeds=(0, 3),
                           train=_fake_training)
    assert folder == tmp_path / "recorded" / "synthetic"
    assert sorted(p.name for p in (folder / "baseline").iterdir()) == ["seed-0"]  # the baseline once
    for stage in ("weights", "both", "abrupt"):
        assert sorted(p.name for p in (folder / stage).iterdir()) == ["seed-0", "seed-3"]
        for seed in ("seed-0", "seed-3"):
            assert sorted(p.name for p in (folder / stage / seed).iterdir()) == ["config.json", "metrics.jsonl"]
    assert json.loads((folder / "abrupt" / "seed-3" / "config.json").read_text())["seed"] == 3
    provenance = json.loads((folder / "provenance.json").read_text())
    assert {"commands", "machine", "date", "commit", "torch", "runs"} <= set(provenance)
    assert provenance["commands"] == ["python -m bintut record --mode smoke"]
    assert provenance["data"] == "synthetic data" and provenance["machine"].startswith(("CPU", "GPU"))
    assert set(provenance["runs"]) == {"baseline/seed-0"} | {f"{s}/seed-{k}" for s in ("weights", "both", "abrupt")
                                                             for k in (0, 3)}
    rec = load_recording("synthetic", tmp_path / "recorded")
    assert list(rec.seeds["both"]) == [0, 3] and rec.finals("both") == {0: pytest.approx(20.0), 3: pytest.approx(20.0)}
    assert rec.final("both") == pytest.approx(20.0) and rec.final("baseline", "soft_acc") == pytest.approx(40.0)
    assert cost_points(rec) == {"weights": 0.0, "both": 0.0, "abrupt": 0.0}  # no fp-continued: the baseline
    rows = recorded_rows(rec) + published_rows()
    assert [r["data"] for r in rows] == ["synthetic data"] * 4 + ["CIFAR-100"] * 2
    assert [r["seeds"] for r in rows[:4]] == [1, 2, 2, 2]
    assert all(r["comparable to published"].startswith("no: other data") for r in rows[:4])
    # a later call with another stage adds to the recording, its runs and commands kept
    more = record_configs("smoke", "synthetic", stages=("fp-continued",), train_subset=20)
    record.record(more, tmp_path / "recorded", "python -m bintut record --stages fp-continued", seeds=(0,),
                  train=_fake_training)
    provenance = json.loads((folder / "provenance.json").read_text())
    assert len(provenance["commands"]) == 2 and "fp-continued/seed-0" in provenance["runs"]
    assert "abrupt/seed-3" in provenance["runs"]
    rec = load_recording("synthetic", tmp_path / "recorded")
    assert cost_points(rec) == {"weights": 0.0, "both": 0.0, "abrupt": 0.0}  # now against fp-continued


def test_record_writes_whole_files_and_never_through_a_link(tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    target = tmp_path / "recorded" / "synthetic" / "baseline" / "seed-0"
    target.mkdir(parents=True)
    (target / "metrics.jsonl").symlink_to(outside)
    record.record(record_configs("smoke", "synthetic", stages=()), tmp_path / "recorded", "cmd", train=_fake_training)
    assert outside.read_text() == "keep me"  # the link was replaced, not written through
    assert not (target / "metrics.jsonl").is_symlink()
    assert not [p for p in target.parent.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("damage", ["torn", "not-json", "no-accuracy", "provenance"])
def test_a_damaged_recording_is_one_line_not_a_traceback(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    folder = record.record(record_configs("smoke", "synthetic", stages=()), tmp_path / "recorded", "cmd",
                           train=_fake_training)
    metrics = folder / "baseline" / "seed-0" / "metrics.jsonl"
    if damage == "torn":
        metrics.write_text('{"epoch": 1, "hard_a')
    elif damage == "not-json":
        (folder / "baseline" / "seed-0" / "config.json").write_text("{")
    elif damage == "no-accuracy":
        metrics.write_text('{"epoch": 1}\n')
    else:
        (folder / "provenance.json").write_text("[1")
    with pytest.raises(RecordingError, match="damaged|no baseline") as caught:
        load_recording("synthetic", tmp_path / "recorded")
    assert "\n" not in str(caught.value)


def test_a_missing_recording_says_how_to_make_one(tmp_path):
    with pytest.raises(RecordingError, match="python -m bintut record --data fashion-mnist"):
        load_recording("fashion-mnist", tmp_path)


def test_the_committed_recording_is_fashion_mnist_with_its_provenance():
    """The lesson's recording (issue 23): >= 2,000 test images, gradual and abrupt with >= 2 seeds each on the same
    test set, fp-continued, deployed accuracy in the last row of every binarizing run, provenance with wall times."""
    rec = load_recording("fashion-mnist")
    assert rec.data == "Fashion-MNIST" and all(cfg["data"] == "fashion-mnist" for cfg in rec.configs.values())
    assert {"baseline", "fp-continued", "both", "abrupt"} <= set(rec.seeds)
    assert len(rec.seeds["both"]) >= 2 and len(rec.seeds["abrupt"]) >= 2
    counts = {rows[-1]["test_images"] for runs in rec.seeds.values() for rows in runs.values()}
    assert counts == {rec.test_images} and rec.test_images >= 2000  # one test set, sampling error <= 1 point
    for stage in ("both", "abrupt", "p-only", "ratio-only"):
        for rows in rec.seeds.get(stage, {}).values():
            last = rows[-1]
            assert last["weights.p"] == 1.0 or last["weights.bin_ratio"] == 1.0  # ends fully binary ...
            assert last["activations.p"] == 1.0 or last["activations.bin_ratio"] == 1.0
            assert last["deployed_acc"] is not None and abs(last["deployed_acc"] - last["hard_acc"]) < 0.01
    for rows in rec.seeds["fp-continued"].values():
        assert rows[-1]["weights.p"] == rows[-1]["activations.bin_ratio"] == 0.0  # ... the reference never quantizes
    p = rec.provenance
    assert all(c.startswith("python -m bintut record") and "--data fashion-mnist" in c for c in p["commands"])
    assert set(p["runs"]) >= {f"{stage}/seed-{k}" for stage in rec.seeds for k in rec.seeds[stage]}
    assert all(run["wall_seconds"] > 0 for run in p["runs"].values()) and p["machine"].startswith("CPU")


def test_the_recorded_figures_draw_from_the_committed_metrics():
    import matplotlib

    matplotlib.use("Agg")
    from bintut.teaching import lesson
    from bintut.teaching.viz import recorded

    rec = load_recording("fashion-mnist")
    for figure in (recorded.plot_recorded_baseline(rec), recorded.plot_recorded_stage(rec, "both"),
                   recorded.plot_recorded_costs(rec)):
        assert rec.data in figure.axes[0].get_title()  # labelled with its data set, never "CIFAR-100"
        assert "CIFAR" not in figure.axes[0].get_title()
    control = recorded.plot_recorded_control(rec)
    assert rec.data in control.get_suptitle() and "CIFAR" not in control.get_suptitle()
    curves = control.axes[0].get_lines()
    assert len(curves) == sum(len(rec.seeds[s]) for s in recorded.CONTROL_STYLES if s in rec.seeds)  # one a seed
    from matplotlib.container import BarContainer

    bars = [c for c in recorded.plot_recorded_costs(rec).axes[0].containers if isinstance(c, BarContainer)]
    costs = bars[0].datavalues.tolist()
    stages = [s for s in lesson.BINARIZING if s in rec.seeds]
    assert costs == pytest.approx([lesson.cost(rec, s).value for s in stages])
    assert costs == pytest.approx([cost_points(rec)[s] for s in stages], abs=0.051)


def test_a_run_whose_metrics_lag_its_checkpoint_is_recorded_whole(tmp_path, monkeypatch):
    """A crash between the checkpoint and the metrics append leaves metrics.jsonl a row short: record copies the
    checkpoint's last row too (issue 24, kind 3)."""
    from types import SimpleNamespace

    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))

    def lagging(cfg, label):
        _fake_training(cfg, label)
        return SimpleNamespace(last_row={"epoch": 3, "hard_acc": 0.3, "soft_acc": 0.6, "train_loss": 1.0})

    folder = record.record(record_configs("smoke", "synthetic", stages=()), tmp_path / "recorded", "cmd", train=lagging)
    rows = load_recording("synthetic", tmp_path / "recorded").metrics["baseline"]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and folder.name == "synthetic"
