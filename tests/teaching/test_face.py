"""The teaching layer's face: ``bintut.teaching.X`` for every name the notebooks and the CLI use, with the figures
(``viz``), the lesson's costs (``lesson``) and the binary-activation fine-tunes (``binact``) as sub-faces; importing
it loads nothing until a name is used."""

import bintut
import bintut.teaching
from tests.faces import face_problems, loaded_after


def test_every_public_name_resolves_in_the_teaching_layer():
    assert face_problems(bintut.teaching) == []
    assert face_problems(bintut.teaching.viz) == []
    assert bintut.teaching.run_stage.__module__ == "bintut.teaching.stages"


def test_bintut_viz_is_the_teaching_layers_figures():
    assert bintut.viz is bintut.teaching.viz
    assert "viz" in dir(bintut)


def test_importing_the_face_loads_no_torch_until_a_name_is_used():
    heavy = ("torch", "matplotlib", "bintut.teaching.", "bintut.training", "bintut.integer", "bintut.data")
    assert loaded_after("import bintut.teaching", heavy) == []
