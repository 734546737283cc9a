"""bintut.training.export: a run folder (or a loaded Run) to its export, with the normalisation recorded."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from bintut.data.sets import SYNTHETIC
from bintut.integer.format import ExportError, load_export
from bintut.quant import get_controls, set_controls
from bintut.training.export import ExportedRun, export_run
from bintut.training.runs import Run


def test_a_run_folder_exports_with_its_data_sets_normalisation(smoke_run, tmp_path):
    exported = export_run(smoke_run.out)
    assert isinstance(exported, ExportedRun) and exported.warning is None and exported.data is SYNTHETIC
    export = exported.export
    assert (export.mean, export.std, export.data) == (SYNTHETIC.mean, SYNTHETIC.std, "synthetic")
    assert export.num_classes == SYNTHETIC.classes and export.image_size == SYNTHETIC.image_size
    assert exported.run.config == smoke_run.config and exported.run.metrics == []  # metrics only when asked
    assert export_run(smoke_run.out, metrics=True).run.metrics == smoke_run.metrics
    path = export.save(tmp_path / "m.npz")
    with np.load(path) as npz:
        header = json.loads(str(npz["header"]))
    assert (header["data"], header["mean"]) == ("synthetic", list(SYNTHETIC.mean))
    assert load_export(path).data == "synthetic"
    assert exported.fp32_bytes() > 10 * export.total_bytes


def test_a_loaded_run_exports_the_same_network(smoke_run):
    from_folder, from_run = export_run(smoke_run.out).export, export_run(smoke_run).export
    for name, layer in from_folder.layers.items():
        assert np.array_equal(layer.bits, from_run.layers[name].bits), name
        other = from_run.layers[name]
        assert np.array_equal(layer.m, other.m) and np.array_equal(layer.bias, other.bias), name


def test_a_run_that_never_reached_full_binarization_is_refused_unless_forced(smoke_run):
    model = copy.deepcopy(smoke_run.model)
    set_controls(model, 0.5, 0.25)
    early = Run(model, [], smoke_run.out, smoke_run.config)
    with pytest.raises(ExportError, match=r"never reached p = bin_ratio = 1 \(its last controls: .*= 0\.5.*--force"):
        export_run(early)
    forced = export_run(early, force=True)
    assert "never reached p = bin_ratio = 1" in forced.warning and "because of --force" in forced.warning
    assert set(get_controls(model).values()) == {0.5, 0.25}  # exported in hard mode, the model left as it was
    assert forced.export.data == "synthetic"


def test_a_missing_run_folder_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        export_run(tmp_path / "no-such-run")
