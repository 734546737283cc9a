"""Faults around the export and the engine (issue 8, items 3, 7, 8 and 11): each reproduced, each refused
clearly, nothing good lost."""

import contextlib
import hashlib
import json
import resource
import shutil
import signal
import zipfile

import numpy as np
import pytest
import torch

from bintut.cli import main
from bintut.files.run_folder import CHECKPOINT
from bintut.integer import c_build, c_library, c_source
from bintut.integer.c_library import write_c_library
from bintut.integer.engine import IntegerResNet
from bintut.integer.fold import export_resnet
from bintut.integer.format import ExportError, load_export


@pytest.fixture(scope="module")
def saved_export(smoke_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.npz"
    return export_resnet(smoke_run.model).save(path)


def _rewrite_header(path, out, edit):
    """A copy of an export whose JSON header was edited (the arrays and the header checksum kept)."""
    with np.load(path) as npz:
        files = {k: npz[k] for k in npz.files}
    header = json.loads(str(files["header"]))
    edit(header)
    files["header"] = np.array(json.dumps(header))
    np.savez(out, **files)
    return out


def test_export_refuses_a_run_that_never_reached_full_binarization(smoke_run, tmp_path, capsys):
    """Item 7: a checkpoint from early in training (p < 1) is refused, naming its controls; --force exports."""
    run = tmp_path / "early"
    shutil.copytree(smoke_run.out, run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["epoch"] = 1  # as if stopped after epoch 1 of 3: the binarization ramp is at ~0.08
    torch.save(state, run / CHECKPOINT)
    out = tmp_path / "model.npz"
    assert main(["export", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bintut: error: run ") and "never reached p = bin_ratio = 1" in err
    assert "weights.p = 0.0" in err and "activations.bin_ratio = 0.0" in err and "--force" in err
    assert not out.exists()
    assert main(["export", str(run), "--out", str(out), "--force"]) == 0
    captured = capsys.readouterr()
    assert "bintut: warning: run" in captured.err and "weights.p = 0.0" in captured.err
    assert load_export(out).num_classes == 100


def test_export_header_is_covered_by_a_checksum(saved_export, tmp_path):
    """Item 8: editing the header (act_step, the block list) is refused, not run silently."""
    load_export(saved_export)

    def step(header):
        header["layers"][0]["act_step"] *= 2

    def blocks(header):
        header["blocks"][0], header["blocks"][1] = header["blocks"][1], header["blocks"][0]

    for edit in (step, blocks):
        edited = _rewrite_header(saved_export, tmp_path / f"{edit.__name__}.npz", edit)
        with pytest.raises(ExportError, match="the header does not match its checksum"):
            load_export(edited)


def test_old_export_versions_are_refused_clearly(saved_export, tmp_path):
    def version_1(header):
        header["version"] = 1

    old = _rewrite_header(saved_export, tmp_path / "v1.npz", version_1)
    with pytest.raises(ExportError, match=r"version 1 export; this bintut reads version 2 .*re-export the run"):
        load_export(old)


@contextlib.contextmanager
def file_size_limit(limit: int):
    """RLIMIT_FSIZE for this process, SIGXFSZ ignored so that a write past it raises OSError (EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_export_save_never_truncates_a_good_file(saved_export, smoke_run, tmp_path, capsys):
    """Item 3 (.npz): a write that fails (a file-size limit) leaves the old export intact and no temp file."""
    target = tmp_path / "model.npz"
    shutil.copyfile(saved_export, target)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    export = load_export(target)
    with file_size_limit(200_000), pytest.raises(OSError, match="File too large"):
        export.save(target)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file left behind
    with file_size_limit(200_000):
        assert main(["export", str(smoke_run.out), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"bintut: error: could not write {target} (File too large); nothing was changed there" in err
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    with zipfile.ZipFile(target) as z:
        assert z.testzip() is None


def test_engine_refuses_bad_images(saved_export):
    """Item 11: raw uint8 pixels, NaN and an empty batch are refused with a clear message, in both engines."""
    export = load_export(saved_export)
    for engine in (IntegerResNet(export), IntegerResNet(export, integer_only=True)):
        with pytest.raises(ValueError, match="expected normalised float images, got uint8"):
            engine(np.zeros((2, 3, 32, 32), dtype=np.uint8))
        nan = np.zeros((2, 3, 32, 32), dtype=np.float32)
        nan[1, 0, 3, 3] = np.nan
        with pytest.raises(ValueError, match="1 NaN or infinite values"):
            engine(nan)
        with pytest.raises(ValueError, match="the batch is empty"):
            engine(np.zeros((0, 3, 32, 32), dtype=np.float32))
        with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
            engine(np.zeros((2, 32, 32, 3), dtype=np.float32))
    integer = IntegerResNet(export, integer_only=True)
    with pytest.raises(ValueError, match="laid out for 32 x 32 images"):
        integer(np.zeros((1, 3, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="expected int8 image codes"):
        integer.integer_logits(np.zeros((1, 32, 32, 3), dtype=np.float32))


# ----------------------------------------------------------------------------- issue 17, item 2: the C export


@pytest.fixture(scope="module")
def c_export(saved_export, tmp_path_factory):
    """An exported C library (2 golden images), and what it takes to write another."""
    export = load_export(saved_export)
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    folder = write_c_library(export, tmp_path_factory.mktemp("c") / "lib", images).folder
    return export, images, folder


def _tree(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_or_interrupted_c_export_leaves_the_earlier_one_whole(c_export, smoke_run, tmp_path, monkeypatch,
                                                                       capsys):
    """2a + 2f: a file-size limit or a Ctrl-C mid-export left bintut.h new and bintut_model.h old (and
    Ctrl-C printed a traceback). The library is written beside DIR and takes its place whole."""
    export, images, source = c_export
    folder = tmp_path / "lib"
    shutil.copytree(source, folder)
    before = _tree(folder)
    with file_size_limit(2_000_000), pytest.raises(OSError, match="File too large"):
        write_c_library(export, folder, images)
    assert _tree(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["lib"]

    real_copy = c_build.shutil.copyfile
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(c_build.shutil, "copyfile", interrupted)
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--c", str(folder),
                 "--golden", "2"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bintut: export stopped" in err
    assert _tree(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["lib", "m.npz"]
    monkeypatch.setattr(c_build.shutil, "copyfile", real_copy)
    (folder / "bintut.o").write_bytes(b"an old build")  # build products of the earlier export go with it
    library = write_c_library(export, folder, images[:1])
    assert library.golden == 1 and not (folder / "bintut.o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib", "m.npz"]


def test_c_export_refuses_a_folder_holding_anything_else(c_export, smoke_run, tmp_path, capsys):
    """2b: a user's README.md and bintut.c in DIR were silently overwritten."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    (folder / "bintut.c").write_text("my code")
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--c", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bintut: error: --c {folder} is not an earlier bintut export (it holds README.md, "
                          "bintut.c)") and err.count("\n") == 1
    assert (folder / "README.md").read_text() == "my notes" and (folder / "bintut.c").read_text() == "my code"
    assert not (tmp_path / "m.npz").exists()  # refused before any work
    earlier = tmp_path / "earlier"
    shutil.copytree(c_export[2], earlier)
    (earlier / "notes.txt").write_text("mine")  # an earlier export with a stranger in it
    with pytest.raises(c_library.CFolderError, match="holds files that are not bintut's .*notes.txt"):
        c_library.check_c_folder(earlier)


@pytest.mark.parametrize("args, message", [
    (["--c", ""], "--c is empty"), (["--out", " "], "--out is empty"), (["--golden", "1000000000"], "--golden must be"),
    (["--golden", "0"], "--golden must be"), (["--c", "x" * 300], "--c: the name xxx"),
    (["--out", "y" * 300 + ".npz"], "--out: the name yyy"),
])
def test_export_arguments_are_checked_up_front(smoke_run, tmp_path, monkeypatch, capsys, args, message):
    """2c/2d/5f: empty --c/--out were skipped or defaulted; --golden 1e9 tried to allocate 22 TiB; a long name
    was a traceback."""
    monkeypatch.chdir(tmp_path)
    with contextlib.suppress(SystemExit):
        assert main(["export", str(smoke_run.out), *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and not (smoke_run.out / "model_int.npz").exists()


def test_golden_images_from_unreadable_synthetic_data_fall_back_to_seeded_ones(smoke_run, monkeypatch):
    """2d: a synthetic run whose data folder is read-only: regenerating its data was an OSError traceback."""
    from bintut.data import choice

    def read_only(cfg, n):
        raise PermissionError(13, "Permission denied", "data/synthetic-640-100-0")

    monkeypatch.setattr(choice, "test_images", read_only)
    images, origin = choice.golden_images(smoke_run.config, 3)
    assert images.shape == (3, 3, 32, 32) and "seeded random images (the run's data cannot be read" in origin


def test_cexport_host_checks_its_arguments(c_export, tmp_path, monkeypatch, capsys):
    """2e: a missing bintut.c was a traceback, --limit -5 printed 'FAIL: None', --limit 0 ran every image,
    a $CC with flags or naming a missing compiler was silently replaced by cc."""
    folder = tmp_path / "lib"
    shutil.copytree(c_export[2], folder)
    (folder / "bintut.c").unlink()
    assert c_build.main(["host", str(folder)]) == 2
    assert f"bintut: error: {folder} lacks bintut.c of an exported C library" in capsys.readouterr().err
    for limit in ("-5", "0"):
        with pytest.raises(SystemExit):
            c_build.main(["host", str(folder), "--limit", limit])
        assert "--limit must be at least 1" in capsys.readouterr().err
    shutil.copyfile(c_source.c_sources() / "bintut.c", folder / "bintut.c")
    monkeypatch.setenv("CC", "no-such-cc-1234 -O2")
    assert c_build.main(["host", str(folder)]) == 2
    assert "$CC names 'no-such-cc-1234', which is not installed" in capsys.readouterr().err
    if shutil.which("cc"):
        monkeypatch.setenv("CC", "cc -O0 -DX='a b'")
        assert c_build.host_compiler() == [shutil.which("cc"), "-O0", "-DX=a b"]
