"""Where metrics go: a JSONL file (always) and Weights & Biases (best effort)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file (or of the metrics.jsonl inside a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """Appends one JSON row per epoch; on resume drops rows of epochs that will be redone."""

    def __init__(self, path: str | os.PathLike, keep_epochs_below: int = 0) -> None:
        self.path = Path(path)
        kept = [r for r in read_metrics(self.path) if r.get("epoch", 0) <= keep_epochs_below]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())


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
