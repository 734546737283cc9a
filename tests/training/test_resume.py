"""Issue 24, kind 3: what a crash at the very end of a run leaves (the last metrics row missing or torn,
results.png missing or torn, after the last checkpoint) is repaired by ``--resume``; starting a run leaves a
concurrent export's temporary file alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from bintut.cli import main
from bintut.config import preset
from bintut.files.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bintut.files.lock import RunLock
from bintut.files.run_folder import CHECKPOINT, FIGURE, METRICS
from bintut.training import recipe
from bintut.training.loop import train
from bintut.training.resume import check_resume
from bintut.training.runs import load_run

from ..conftest import tiny
from .conftest import small


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished one-epoch run (seconds): its folder and its config."""
    root = tmp_path_factory.mktemp("repair")
    cfg = tiny(root / "data", root / "run", epochs=1, synthetic_train=32, synthetic_test=16)
    train(cfg)
    return cfg, root / "run"


def _copy(source, target):
    target.mkdir()
    for p in source.iterdir():
        if p.is_file():
            (target / p.name).write_bytes(p.read_bytes())
    return target


def test_resume_repairs_the_last_metrics_row_and_the_figure_a_crash_left(finished_run, tmp_path, capsys):
    """A kill after the last checkpoint: the row missing, results.png missing; then a torn row and a torn figure.
    --resume said 'nothing to train' and left them so; now it rewrites the row from the checkpoint and redraws."""
    cfg, source = finished_run
    out = _copy(source, tmp_path / "run")
    good_metrics, good_row = (out / METRICS).read_text(), load_checkpoint(out / CHECKPOINT)["last_row"]
    assert json.loads(good_metrics.splitlines()[-1])["epoch"] == good_row["epoch"] == 1
    again = cfg.replace(out=str(out), resume=True)

    (out / METRICS).write_text("")  # killed between the checkpoint and the metrics append
    (out / FIGURE).unlink()
    capsys.readouterr()
    summary = train(again)
    lines = capsys.readouterr().out.splitlines()
    repaired = [line for line in lines if line.startswith("bintut: repaired")]
    assert repaired == [f"bintut: repaired what a crash at the end of the run left in {out}: wrote its epoch-1 row "
                        f"from the checkpoint; redrew {FIGURE}"]
    assert json.loads((out / METRICS).read_text()) == json.loads(json.dumps(good_row))
    assert (out / FIGURE).read_bytes().startswith(b"\x89PNG") and summary["already_finished"]

    (out / METRICS).write_text(good_metrics[: len(good_metrics) // 2])  # a full disk tore the row
    figure = (out / FIGURE).read_bytes()
    (out / FIGURE).write_bytes(figure[: len(figure) // 2])  # ... and the figure (an older bintut wrote in place)
    train(again)  # said in the one line below, not as a warning
    repaired = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bintut: repaired")]
    assert repaired == [f"bintut: repaired what a crash at the end of the run left in {out}: cut off the torn last "
                        f"line of {METRICS}; wrote its epoch-1 row from the checkpoint; redrew {FIGURE}"]
    assert (out / METRICS).read_text() == json.dumps(json.loads(good_metrics)) + "\n"
    assert (out / FIGURE).read_bytes()[-8:] == figure[-8:]

    train(again)  # nothing left to repair: nothing said, nothing written
    assert "repaired" not in capsys.readouterr().out
    assert load_run(out).metrics == [json.loads(good_metrics)]


def test_a_wrongly_typed_checkpoint_field_is_one_line(finished_run, tmp_path, capsys):
    """Kind 5: an edited checkpoint (epoch a string, last_row a list, rng floats) was a TypeError traceback on
    --resume and on export."""
    cfg, source = finished_run
    for key, value in (("epoch", "1"), ("last_row", [1]), ("rng", torch.zeros(3)), ("batch", -1)):
        out = _copy(source, tmp_path / f"bad-{key}")
        state = load_checkpoint(out / CHECKPOINT)
        state[key] = value
        torch.save(state, out / CHECKPOINT)
        with pytest.raises(CheckpointError, match=f"its field {key} holds"):
            train(cfg.replace(out=str(out), resume=True))
        if key == "epoch":
            with pytest.raises(CheckpointError, match="its field epoch holds str '1'"):
                load_run(out)
            assert main(["export", str(out), "--out", str(tmp_path / "m.npz")]) == 2
            err = capsys.readouterr().err
            assert err.startswith("bintut: error: ") and err.count("\n") == 1 and "its field epoch" in err
    out = _copy(source, tmp_path / "bad-config")
    state = load_checkpoint(out / CHECKPOINT)
    state["config"]["seed"] = 1.5  # a TrainConfig field of the wrong type
    torch.save(state, out / CHECKPOINT)
    assert main(["export", str(out), "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records an invalid configuration (seed is float '1.5', not int)" in err


def test_starting_a_run_leaves_a_concurrent_exports_temporary_file_alone(tmp_path):
    """`train` deleted every temporary file in its folder, also the .npz an `export` was writing there."""
    out = tmp_path / "run"
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        live = out / f".model_int.{writer.pid}.0123abcd.tmp.npz"
        dead = out / f".model_int.{int(gone.stdout)}.89abcdef.tmp.npz"
        for p in (live, dead):
            p.write_bytes(b"half an export")
        lock = RunLock(out).acquire()
        try:
            assert live.exists() and not dead.exists()
        finally:
            lock.release()
    finally:
        writer.kill()
        writer.wait()
    assert sorted(p.name for p in out.iterdir()) == [live.name]
    assert os.path.getsize(live) == len(b"half an export")


def test_refuses_an_out_that_holds_results_or_foreign_files(data_dir, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "metrics.jsonl").write_text('{"epoch": 1, "hard_acc": 0.5}\n')
    (results / "results.png").write_bytes(b"png")
    for resume in (False, True):
        with pytest.raises(FileExistsError, match="holds results \\(metrics.jsonl, results.png\\) but no checkpoint"):
            train(small(data_dir, results, resume=resume))
    assert sorted(p.name for p in results.iterdir()) == ["metrics.jsonl", "results.png"]  # untouched, unlocked
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"jpg")
    with pytest.raises(FileExistsError, match="not empty and holds no bintut run \\(it holds cat.jpg\\)"):
        train(small(data_dir, other))
    assert [p.name for p in other.iterdir()] == ["cat.jpg"]
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.json").write_text(json.dumps(small(data_dir, started, epochs=7).to_dict()))
    with pytest.raises(ValueError, match="epochs: run has 7, now 2"):
        train(small(data_dir, started))
    with pytest.raises(ValueError, match="out must name a folder"):
        preset("smoke", out="")
    with pytest.raises(SystemExit):
        main(["train", "--preset", "smoke", "--out", ""])


def test_truncated_or_foreign_checkpoints_are_one_line_errors(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = small(data_dir, run, epochs=1, resume=True)
    (run / "config.json").write_text(cfg.to_json())
    save_checkpoint(run / "checkpoint.pt", {"model": {"w": torch.ones(1000)}, "config": cfg.to_dict()})
    good = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    argv = ["train", "--preset", "smoke", "--data-root", str(data_dir), "--out", str(run), "--resume", "--epochs", "1",
            "--synthetic-train", "16", "--synthetic-test", "8", "--batch-size", "8", "--eval-batch-size", "8",
            "--no-progress", "--mix-prob", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a readable checkpoint (truncated, corrupt" in err and "delete it" in err
    (run / "checkpoint.pt").write_bytes(good)  # loads, but it is not a bintut training checkpoint
    assert main(argv) == 2
    assert "is not a bintut checkpoint (no optimizer, scaler" in capsys.readouterr().err
    (run / "checkpoint.pt").write_bytes(good[:100])
    with pytest.raises(CheckpointError, match="init_from: .*not a readable checkpoint"):
        recipe.build_model(small(data_dir, tmp_path / "other", init_from=str(run)))


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_a_note(capsys):
    """5c: a checkpoint written before a config field existed blamed a setting the user did not change."""
    from bintut.config import preset
    from bintut.training.resume import check_resume

    cfg = preset("smoke")
    saved = cfg.to_dict()
    del saved["mix_draw"]  # a run saved before the field was added
    check_resume(cfg, saved)
    assert "predates the setting(s) mix_draw (now 'reference'); continuing" in capsys.readouterr().out
    saved["epochs"] = 99
    with pytest.raises(ValueError, match=r"differs from the saved run \(epochs: run has 99, now 3\)$"):
        check_resume(cfg, saved)


def test_a_run_saved_before_drop_last_existed_still_resumes():
    cfg = preset("smoke")
    saved = {k: v for k, v in cfg.to_dict().items() if k != "drop_last"}
    check_resume(cfg, saved)  # no "configuration differs": the missing field had its default
    with pytest.raises(ValueError, match="drop_last"):
        check_resume(cfg.replace(drop_last=True), saved)
