"""The training layer's face: ``bintut.training.X`` for every name the notebooks, the CLI and the benchmarks use;
importing it loads nothing until a name is used."""

import bintut.training
from tests.faces import face_problems, loaded_after


def test_every_public_name_resolves_in_the_training_layer():
    assert face_problems(bintut.training) == []
    assert bintut.training.train.__module__ == "bintut.training.loop"


def test_importing_the_face_loads_no_torch_until_a_name_is_used():
    heavy = ("torch", "matplotlib", "bintut.training.", "bintut.teaching")
    assert loaded_after("import bintut.training", heavy) == []
    assert "torch" in loaded_after("import bintut.training; bintut.training.train_step", ("torch",))
