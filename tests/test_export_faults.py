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

from bintut.checkpoint import CHECKPOINT
from bintut.cli import main
from bintut.engine import IntegerResNet
from bintut.export import ExportError, export_resnet, load_export


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
