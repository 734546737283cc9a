"""What every layer's tests share. The tests mirror the library: tests/<layer>/test_<module>.py for
bintut/<layer>/<module>.py (tests/ideas for the top-level idea modules bintut/{errors,config,schedule,quant,
fused_quant,model,binact}.py, tests/entry for bintut/{__init__,__main__,cli,commands}.py); the project-wide checks
stay at the top (test_layers, test_package, test_docstrings, test_book, test_notebooks_static) and in tests/project.
A fault is tested beside the code that handles it. A test that needs a trained run lives in the highest layer it
uses (tests/training, tests/teaching or tests/entry); tests/integer never trains (see tests/README.md).

Here: the data root, the smoke run (trained once per session; bintut.training is imported only when a test asks
for it), :func:`tiny` (a seconds-long config), a calibrated random model, and a stalled server. Every import of
bintut or torch is inside a function, so that collecting a layer imports only what its tests use."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    """A data root in which the synthetic sets are generated (cached for the session)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory):
    """The smoke preset, trained once per test session and shared by xdist workers (file lock)."""
    from bintut.config import preset
    from bintut.training.runs import load_or_train

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with pytest.MonkeyPatch.context() as patch:  # scoped: notebook kernels must not inherit it
        patch.setenv("BINTUT_RUNS", str(shared / "runs"))
        return load_or_train(preset("smoke", data_root=str(shared / "data"), progress=False))


def tiny(data_dir, out, **overrides):
    """A seconds-long config: synthetic data, few steps, every moving part switched on."""
    from bintut.config import preset

    values = dict(
        data_root=str(data_dir), out=str(out), synthetic_train=96, synthetic_test=32, epochs=2,
        batch_size=32, eval_batch_size=32, mix_prob=0.5, progress=False, wandb="disabled",
        lr=[[0.2, "linear", 1e-4, 1e-3], [1.0, "cosine", 1e-3, 1e-4]],
        weight_p=[[0.2, "stay", 0, 0], [1.0, "linear", 0, 1]],
        weight_ratio=[[0.3, "stay", 0, 0], [1.0, "cosine", 0, 1]],
        act_p=[[0.2, "stay", 0, 0], [1.0, "linear", 0, 1]],
        act_ratio=[[0.3, "stay", 0, 0], [1.0, "cosine", 0, 1]],
    )
    values.update(overrides)
    return preset("smoke", **values)


def leftovers(folder: Path) -> list[str]:
    """The hidden files a run folder holds besides its lock: temporary files a write left behind."""
    from bintut.files.run_folder import LOCK

    return sorted(p.name for p in folder.glob(".*") if p.name != LOCK)


@pytest.fixture
def stalled_server(monkeypatch):
    """A server on 127.0.0.1 that accepts connections and never answers; downloads time out after 1 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, done = [], threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "1")
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    done.set()
    thread.join(5)
    for conn in held + [server]:
        conn.close()


def calibrated(seed: int) -> torch.nn.Module:
    """A random-init, fully binary ResNet18 whose BatchNorm statistics and int8 ranges saw one batch."""
    import torch

    from bintut.model import resnet18_cifar
    from bintut.quant import binarize_, set_controls

    torch.manual_seed(seed)
    model = binarize_(resnet18_cifar(pretrained=False))
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 32, 32))
    set_controls(model, 1.0, 1.0)
    return model.eval()


def one_line(err: str, start: str = "bintut: error: ") -> str:
    assert err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err, err
    return err
