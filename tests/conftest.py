from __future__ import annotations

import os

import pytest

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
    from bintut.runs import load_or_train

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
