"""``python -m bintut clean`` (bintut.files.run_cache) and ``make clean``: the run cache freed, with how much."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

from bintut.cli import main
from bintut.files.lock import RunLock

ROOT = Path(__file__).resolve().parents[2]


def _run(folder: Path, size: int = 1000, name: str = "checkpoint.pt") -> Path:
    folder.mkdir(parents=True)
    (folder / name).write_bytes(b"\0" * size)
    (folder / "metrics.jsonl").write_text("{}\n")
    return folder


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """./runs and ./notebooks/runs of a fresh working folder, each with a run, a lock file and a foreign file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BINTUT_RUNS", raising=False)
    monkeypatch.setenv("BINTUT_RECORDED", str(tmp_path / "docs" / "recorded"))
    _run(tmp_path / "runs" / "smoke-1234", 2_000_000)
    (tmp_path / "runs" / ".smoke-1234.lock").write_text("")
    _run(tmp_path / "notebooks" / "runs" / "smoke-baseline-99", 500_000, "config.json")
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    (tmp_path / "runs" / "photos").mkdir()
    return tmp_path


def test_clean_frees_the_run_folders_and_says_how_much(caches, capsys):
    assert main(["clean"]) == 0
    out = capsys.readouterr().out
    assert "bintut: deleted runs/smoke-1234 (2.0 MB)" in out
    assert "bintut: deleted notebooks/runs/smoke-baseline-99 (500.0 kB)" in out
    assert "bintut: freed 2.5 MB in 2 run folders (runs, notebooks/runs); 2 other entries left alone" in out
    assert sorted(p.name for p in (caches / "runs").iterdir()) == ["notes.txt", "photos"]  # not ours: kept
    assert list((caches / "notebooks" / "runs").iterdir()) == []
    assert main(["clean"]) == 0
    assert "bintut: freed 0 bytes in 0 run folders" in capsys.readouterr().out


def test_dry_run_lists_what_it_would_free_and_deletes_nothing(caches, capsys):
    before = sorted(str(p) for p in caches.rglob("*"))
    assert main(["clean", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "bintut: would delete runs/smoke-1234 (2.0 MB)" in out and "would delete runs/.smoke-1234.lock" in out
    assert "bintut: would free 2.5 MB in 2 run folders" in out
    assert sorted(str(p) for p in caches.rglob("*")) == before


def test_the_bintut_runs_folder_is_freed_and_a_training_run_is_kept(caches, monkeypatch, capsys):
    other = caches / "elsewhere"
    monkeypatch.setenv("BINTUT_RUNS", str(other))
    _run(other / "fast-1", 3000)
    busy = _run(other / "fast-2", 3000)
    with RunLock(busy):  # a run training there now
        assert main(["clean"]) == 0
    out = capsys.readouterr().out
    assert f"bintut: deleted {other / 'fast-1'}" in out and not (other / "fast-1").exists()
    assert f"bintut: kept {busy}: in use: a run is training there" in out and (busy / "checkpoint.pt").is_file()
    assert f"({other}, runs, notebooks/runs)" in out
    held = other / ".fast-2.lock"
    held.write_text("")
    with open(held) as handle:  # a load_or_train waiting for or holding the cache's lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert main(["clean"]) == 0
    assert f"bintut: kept {held}: in use" in capsys.readouterr().out and held.exists()


def test_the_recordings_are_never_cleaned(caches, monkeypatch, capsys):
    recorded = caches / "docs" / "recorded"
    stage = _run(recorded / "fashion-mnist", 100, "config.json")  # even one that looks like a run folder
    monkeypatch.setenv("BINTUT_RUNS", str(recorded))
    assert main(["clean"]) == 0
    out = capsys.readouterr().out
    assert f"bintut: kept {recorded}: inside the recordings" in out and (stage / "config.json").is_file()
    assert "freed 2.5 MB in 2 run folders" in out  # ./runs and ./notebooks/runs still are


def test_nothing_to_clean_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BINTUT_RUNS", raising=False)
    assert main(["clean"]) == 0
    assert capsys.readouterr().out == ("bintut: freed 0 bytes in 0 run folders (no run cache here (./runs, "
                                       "./notebooks/runs, $BINTUT_RUNS))\n")


def test_a_bad_flag_prints_cleans_usage(caches, capsys):
    with pytest.raises(SystemExit) as info:
        main(["clean", "--all"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: python -m bintut clean [-h] [--dry-run]\n")
    assert err.endswith("python -m bintut clean: error: unrecognized arguments: --all\n")
    assert (caches / "runs" / "smoke-1234").is_dir()


def test_make_clean_calls_it():
    plan = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "-m bintut clean" in plan and "rm -rf results build .pytest_cache" in plan
    assert "rm -rf runs results" not in plan  # the run cache is freed by the command, which says how much
