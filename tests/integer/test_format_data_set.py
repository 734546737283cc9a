"""The input normalisation an export records: mean, std and the data set's name, in the .npz header, bintut.h and
the ONNX metadata; a file without them (written before bintut recorded them) loads as "not recorded"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bintut.integer import c_source
from bintut.integer.format import ExportError, load_export

OLD_FILE = Path(__file__).parents[1] / "fixtures" / "synth5.npz"  # written before the data set was recorded

FASHION = ((0.219,) * 3, (0.3318,) * 3)


@pytest.fixture
def recorded(saved_export, tmp_path):
    export = load_export(saved_export)
    export.mean, export.std = FASHION
    export.data = "fashion-mnist"
    return export, export.save(tmp_path / "recorded.npz")


def test_the_header_keeps_mean_std_and_data_set(recorded):
    export, path = recorded
    with np.load(path) as npz:
        header = json.loads(str(npz["header"]))
    assert (header["mean"], header["std"], header["data"]) == ([0.219] * 3, [0.3318] * 3, "fashion-mnist")
    back = load_export(path)
    assert (back.mean, back.std, back.data) == (*FASHION, "fashion-mnist")
    assert back.normalization_words == ("mean = (0.219, 0.219, 0.219) and std = (0.3318, 0.3318, 0.3318) (the data "
                                        "set it was trained on: fashion-mnist)")


def test_an_older_file_loads_and_says_the_data_set_is_not_recorded():
    old = load_export(OLD_FILE)
    assert old.data is None  # a missing field means "not recorded"
    with np.load(OLD_FILE) as npz:
        assert "data" not in json.loads(str(npz["header"]))
    assert old.mean == (0.5071, 0.4867, 0.4408)  # its mean and std were recorded, the data set's name not yet
    assert old.normalization_words == "mean = (0.5071, 0.4867, 0.4408) and std = (0.2675, 0.2565, 0.2761)"


def test_an_export_without_any_normalisation_says_so_in_bintut_h(saved_export):
    export = load_export(saved_export)
    assert (export.mean, export.std, export.data) == (None, None, None)
    assert "with the mean and std the model was trained with (not recorded in this export)" in \
        c_source.api_header(export, "a test")


def test_bintut_h_names_the_data_set(recorded):
    header = c_source.api_header(load_export(recorded[1]), "run x")
    assert " * with mean = (0.219, 0.219, 0.219) and std = (0.3318, 0.3318, 0.3318) (the data set it was trained " \
           "on: fashion-mnist); rounding half to even" in header


@pytest.mark.parametrize("name", ["*/ int x; /*", "", "a" * 65, "fashion mnist", 3])
def test_a_data_name_that_could_reach_c_unescaped_is_refused(saved_export, tmp_path, name):
    export = load_export(saved_export)
    export.data = name
    path = export.save(tmp_path / "bad.npz")
    with pytest.raises(ExportError, match=r"data is .*expected a data set's name"):
        load_export(path)


def test_the_onnx_metadata_names_the_data_set(recorded):
    pytest.importorskip("onnx")
    from bintut.integer.onnx_export import to_onnx

    model = to_onnx(recorded[0], "run x")
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["normalization"]) == {"mean": [0.219] * 3, "std": [0.3318] * 3, "data": "fashion-mnist",
                                                 "formula": "(pixel / 255 - mean[c]) / std[c]"}
