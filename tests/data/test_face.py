"""The data layer's face: ``bintut.data.X`` for every name the notebooks, the CLI and the benchmarks use; importing
it loads no torch and no other layer above the files."""

import bintut.data
from tests.faces import face_problems, loaded_after


def test_every_public_name_resolves_in_the_data_layer():
    assert face_problems(bintut.data) == []
    assert bintut.data.test_images.__module__ == "bintut.data.choice"


def test_importing_the_face_loads_no_torch_nor_a_layer_above():
    heavy = ("torch", "matplotlib", "bintut.integer", "bintut.training", "bintut.teaching")
    assert loaded_after("import bintut.data", heavy) == []
