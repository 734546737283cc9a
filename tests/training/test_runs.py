"""bintut.training.runs: the notebooks' run cache ($BINTUT_RUNS) -- read-only caches, a cache that is a file,
a damaged cached stage."""

from __future__ import annotations

import errno
import fcntl

import pytest

from bintut.training import runs

from ..conftest import tiny


def test_a_finished_stage_is_read_from_a_read_only_cache(cached, monkeypatch):
    """4a: the cache opened its lock file for writing before reading (a shared read-only cache failed)."""
    from bintut.training import runs

    cfg, folder = cached
    cache = folder.parent
    before = sorted(p.name for p in cache.iterdir())
    monkeypatch.setattr(runs, "_locked", lambda path: pytest.fail("took the training lock to read a finished run"))
    for path in (folder, cache):
        path.chmod(0o555)
    try:
        run = runs.load_or_train(cfg)
    finally:
        for path in (folder, cache):
            path.chmod(0o755)
    assert run.final["epoch"] == cfg.epochs and sorted(p.name for p in cache.iterdir()) == before


def test_a_run_cache_that_is_a_file_is_named(tmp_path, monkeypatch):
    """4b: BINTUT_RUNS naming a file gave a raw FileExistsError that did not name the variable."""
    from bintut.config import preset
    from bintut.training.runs import RunCacheError, load_or_train

    (tmp_path / "runs").write_text("not a folder")
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    with pytest.raises(RunCacheError, match=r"\$BINTUT_RUNS = .*runs is a file, not a folder"):
        load_or_train(preset("smoke"))


def test_a_damaged_cached_stage_gets_advice_for_a_notebook(cached):
    """4c: the advice for a corrupt cached stage (delete its checkpoint) led to a second error, about --out."""
    from bintut.training.runs import RunCacheError, load_or_train

    cfg, folder = cached
    (folder / "checkpoint.pt").write_bytes(b"PK\x03\x04 torn")
    advice = rf"cached run {folder} is damaged .*delete that whole folder .*shutil.rmtree.*run this cell again"
    with pytest.raises(RunCacheError, match=advice):
        load_or_train(cfg)
    (folder / "checkpoint.pt").unlink()  # what the old advice said to do
    with pytest.raises(RunCacheError, match=advice) as info:
        load_or_train(cfg)
    assert "--out" not in str(info.value) and (folder / "metrics.jsonl").is_file()  # nothing deleted for the user


def test_a_run_cache_on_a_filesystem_without_locks_is_one_line(tmp_path, monkeypatch):
    """flock's ENOLCK (NFS without a lock manager) in $BINTUT_RUNS was a traceback."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(fcntl, "flock", no_locks)  # the run cache locks through bintut.files.lock
    with pytest.raises(runs.RunCacheError) as caught:
        runs.load_or_train(tiny(tmp_path / "data", tmp_path / "unused", epochs=1))
    message = str(caught.value)
    assert "\n" not in message and "is on a filesystem without file locks (No locks available)" in message
    assert f"set ${runs.RUNS_ENV} to a folder on a local disk" in message
    assert not any((tmp_path / "cache").glob("*/*"))  # nothing trained
