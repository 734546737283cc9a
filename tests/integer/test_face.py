"""The integer layer's face: ``bintut.integer.X`` for every name the notebooks, the CLI and the benchmarks use,
and ``import bintut.integer`` stays as light as the numpy-only deployment path needs."""

import bintut.integer
from tests.faces import face_problems, loaded_after


def test_every_public_name_resolves_in_the_integer_layer():
    assert face_problems(bintut.integer) == []
    assert bintut.integer.export_resnet.__module__ == "bintut.integer.fold"
    assert bintut.integer.kernels.__name__ == "bintut.integer.kernels"  # submodules stay reachable


def test_importing_the_face_loads_no_torch_nor_another_layer():
    heavy = ("torch", "matplotlib", "bintut.data", "bintut.training", "bintut.teaching")
    assert loaded_after("import bintut.integer", heavy) == []


def test_the_numpy_path_through_the_face_loads_no_torch():
    """A microcontroller user's names (kernels, engine, C export) come through the face without torch."""
    statement = "from bintut.integer import IntegerResNet, addsub_gemm, load_export, write_c_library"
    assert loaded_after(statement, ("torch", "bintut.training")) == []
