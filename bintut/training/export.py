"""From a run folder to its export in one call: :func:`export_run` loads the run's model, checks that it
reached p = bin_ratio = 1, folds BatchNorm into the integer network (:func:`bintut.integer.fold.export_resnet`)
and records the input normalisation -- the mean, std and name of the data set the run trained on
(:mod:`bintut.data.sets`) -- in the export, whence the ``.npz`` header, the C library's ``bintut.h`` and the
ONNX metadata carry it. The command line (``python -m bintut export``), the notebooks and the benchmarks use it.

It lives in ``training`` because loading a run builds its model from the recipe; ``integer`` stays free of the
training stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bintut.data.sets import DataSet, data_set
from bintut.integer.fold import export_resnet, fp32_state_dict_bytes
from bintut.integer.format import ExportError, ResNetExport
from bintut.quant import get_controls, hard_mode
from bintut.training.runs import Run, load_run


@dataclass
class ExportedRun:
    """A run and its export: ``run`` (model in eval mode, config, metrics if asked for), ``export`` (the integer
    network, normalisation and data set recorded), ``data`` (the data set's description) and ``warning`` (a line
    saying why the export is not the network the run trained, with ``force``; None otherwise)."""

    run: Run
    export: ResNetExport
    data: DataSet
    warning: str | None = None

    def fp32_bytes(self) -> int:
        """Bytes on disk of the same model as a plain fp32 torchvision state_dict (for the size comparison)."""
        return fp32_state_dict_bytes(self.run.model)


def export_run(run: str | os.PathLike | Run, force: bool = False, metrics: bool = False,
               image_size: int = 32) -> ExportedRun:
    """Export a run: a run folder (holding ``checkpoint.pt``) or a :class:`~bintut.training.runs.Run` already
    loaded (e.g. by ``load_or_train``). The model is folded in its fully binary view (``hard_mode``) for square
    images of ``image_size`` pixels; ``metrics`` also reads the folder's metrics rows.

    Raises ExportError (one line) when the run never reached p = bin_ratio = 1 -- its fully binary view is not
    the network it trained -- unless ``force`` (then ``warning`` says so), and as export_resnet does;
    FileNotFoundError or CheckpointError (a ValueError) as :func:`~bintut.training.runs.load_run` does; ValueError
    for a run whose config names an unknown data set.
    """
    loaded = run if isinstance(run, Run) else load_run(run, metrics=metrics)
    controls = get_controls(loaded.model)
    warning = None
    if not controls or any(value != 1.0 for value in controls.values()):
        last = ", ".join(f"{k} = {v:.4g}" for k, v in controls.items()) or "no quantizers"
        if not force:
            raise ExportError(f"run {loaded.out} never reached p = bin_ratio = 1 (its last controls: {last}), so "
                              "its fully binary view is not the network it trained; train it to the end, or pass "
                              "--force (force=True) to export that view anyway")
        warning = (f"run {loaded.out} never reached p = bin_ratio = 1 (its last controls: {last}); exporting its "
                   "fully binary view because of --force")
    data = data_set(loaded.config.data)
    with hard_mode(loaded.model):
        export = export_resnet(loaded.model, image_size, normalization=data.normalization)
    export.data = data.name
    return ExportedRun(loaded, export, data, warning)
