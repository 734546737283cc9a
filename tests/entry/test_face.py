"""The top-level face and the layer sentences: ``bintut.__all__`` resolves and stays light, and what the package's
and each layer's docstring says about who imports whom is what tests/test_layers.py's ALLOWED enforces."""

from __future__ import annotations

import importlib
import re

import bintut
from tests.faces import face_problems, loaded_after
from tests.test_layers import ALLOWED

LAYER_WORD = re.compile(r"``(\w+)``|\bthe\s+(ideas)\b|\bthe\s+(entry)\s+points\b")
# The packages whose docstring says what their layer imports (the ideas and the entry points are modules).
PACKAGES = ("files", "data", "integer", "training", "teaching")


def layers_named(text: str) -> list[str]:
    """'the ideas, ``files`` and ``data``' -> ['ideas', 'files', 'data']."""
    return [next(g for g in m.groups() if g) for m in LAYER_WORD.finditer(text)]


def bullets(doc: str) -> list[tuple[str, list[str]]]:
    """The package docstring's layer list, in order: (layer, the layers its bullet says it imports)."""
    listed = []
    for layer, text in re.findall(r"^\* ``(\w+)`` -- (.*?)(?=^\* |^$)", doc, re.S | re.M):
        parts = re.split(r";\s+imports\s", text)
        assert len(parts) == 2, f"the {layer} bullet has no '; imports ...'"
        listed.append((layer, layers_named(parts[1])))
    return listed


def test_the_top_level_names_resolve_and_import_light():
    assert face_problems(bintut, every_module=False) == []  # the CLI's modules stay off it (tests/test_package.py)
    assert len(bintut.__all__) <= 15, "the top-level face is what a learner uses; the rest lives in the faces"
    assert loaded_after("import bintut", ("torch", "matplotlib", "bintut.")) == []


def test_the_package_docstring_lists_the_layers_bottom_up_as_allowed():
    listed = bullets(bintut.__doc__)
    assert [layer for layer, _ in listed] == list(ALLOWED), "one bullet per layer, in ALLOWED's order"
    for position, (layer, imports) in enumerate(listed):
        assert set(imports) == ALLOWED[layer] - {layer}, f"{layer}'s bullet: {imports}"
        below = {other for other, _ in listed[:position]}
        mutual = {other for other in imports if layer in ALLOWED[other]}  # the ideas and files use each other
        assert set(imports) - mutual <= below, f"{layer} imports a layer listed after it"


def test_each_layers_docstring_says_what_it_imports_and_never_imports():
    for name in PACKAGES:
        doc = importlib.import_module(f"bintut.{name}").__doc__
        found = re.search(r"Imports (.*?);\s+never\s(.*?)[.(]", doc, re.S)
        assert found, f"bintut.{name}'s docstring has no 'Imports ...; never ...' sentence"
        imports, never = (set(layers_named(part)) for part in found.groups())
        assert imports == ALLOWED[name] - {name}, f"bintut.{name} says it imports {sorted(imports)}"
        assert never == set(ALLOWED) - ALLOWED[name] - {name}, f"bintut.{name} says it never imports {sorted(never)}"


def test_the_checker_reads_a_wrong_sentence_as_wrong():
    """The parsing above is not vacuous: a backwards list and a missing layer are told apart from the right ones."""
    wrong = "* ``teaching`` -- top; imports ``training``.\n* ``ideas`` -- bottom; imports ``files``.\n\n"
    assert bullets(wrong) == [("teaching", ["training"]), ("ideas", ["files"])]
    assert layers_named("the ideas, ``files`` and ``data``; never the entry points") == ["ideas", "files", "data",
                                                                                         "entry"]
