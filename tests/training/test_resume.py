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
from bintut.files.checkpoint import CheckpointError, load_checkpoint
from bintut.files.lock import RunLock
from bintut.files.run_folder import CHECKPOINT, FIGURE, METRICS
from bintut.training.loop import train
from bintut.training.runs import load_run

from ..conftest import tiny


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
