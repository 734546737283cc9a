"""Weights & Biases tracking of a run (optional: off unless asked for, offline without network).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from bintut.files.run_folder import METRICS


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where wandb's own console lines would bury the training output)."""
    import sys

    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


class WandbRun:
    """wandb that can never fail the training: offline by default, every call guarded."""

    def __init__(self, mode: str, config: dict[str, Any], out: Path, run_id: str | None = None) -> None:
        self.run = None
        if mode == "disabled":
            return
        try:
            import wandb

            self.run = wandb.init(
                project="bintut", mode=mode, config=config, dir=str(out),
                id=run_id, resume="allow" if run_id else None,
                settings=wandb.Settings(silent=_in_notebook()),  # a notebook shows one line per epoch instead
            )
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            warnings.warn(f"wandb could not start ({err}); metrics still go to {METRICS}", stacklevel=2)

    @property
    def id(self) -> str | None:
        return getattr(self.run, "id", None)

    def log(self, row: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(row, step=step)
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"wandb.log failed ({err}); disabling wandb for this run", stacklevel=2)
            self.run = None

    def finish(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception:  # noqa: BLE001
            pass
