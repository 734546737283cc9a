"""The notebooks import through bintut's faces: at most 3 import lines each (every import statement line in a code
cell, numpy and torch included), only ``bintut`` itself or its public names from the package, and every
``bintut.X.Y`` a cell uses resolves through a face (a name of its ``__all__``, or one of its submodules)."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

import bintut

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
MAX_IMPORT_LINES = 3
FACES = ("data", "integer", "training", "teaching", "viz")


def code_trees(path: Path) -> list[ast.Module]:
    return [ast.parse(c.source) for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def import_lines(trees: list[ast.Module]) -> list[str]:
    """Each import statement's source line (a parenthesised import over several lines counts once per line)."""
    lines = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines += [ast.unparse(node)] * (node.end_lineno - node.lineno + 1)
    return lines


def bintut_chains(trees: list[ast.Module]) -> set[tuple[str, ...]]:
    """Every longest attribute chain rooted at the name ``bintut``: ``bintut.integer.export_resnet`` ->
    ('integer', 'export_resnet')."""
    chains, inner = set(), set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                parts, value = [node.attr], node.value
                while isinstance(value, ast.Attribute):
                    inner.add(id(value))
                    parts.append(value.attr)
                    value = value.value
                if isinstance(value, ast.Name) and value.id == "bintut" and id(node) not in inner:
                    chains.add(tuple(reversed(parts)))
    return chains


def face_problem(chain: tuple[str, ...]) -> str | None:
    """Why ``bintut.<chain>`` does not go through a face, or None."""
    first = chain[0]
    if first not in {*bintut.__all__, *bintut._SUBMODULES, *bintut._ALIASES}:
        return f"bintut.{first} is not on the top-level face"
    if first in FACES and len(chain) > 1:
        face = getattr(bintut, first)
        reachable = {*face.__all__, *getattr(face, "_SUBMODULES", ())}
        if chain[1] not in reachable:
            return f"bintut.{first}.{chain[1]} is not on the {first} face"
    value = bintut
    for part in chain:
        try:
            value = getattr(value, part)
        except AttributeError:
            return f"bintut.{'.'.join(chain)} does not resolve"
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_imports_in_at_most_three_lines_through_the_faces(path):
    trees = code_trees(path)
    lines = import_lines(trees)
    assert len(lines) <= MAX_IMPORT_LINES, f"{path.name} has {len(lines)} import lines: {lines}"
    for node in (n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)):
        if node.module.startswith("bintut"):
            assert node.module == "bintut", f"{path.name}: {ast.unparse(node)} goes around the faces"
            for alias in node.names:
                assert face_problem((alias.name,)) is None, f"{path.name}: {ast.unparse(node)}"
    for node in (n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.Import)):
        assert all(a.name == "bintut" or not a.name.startswith("bintut") for a in node.names), ast.unparse(node)
    problems = sorted(filter(None, map(face_problem, bintut_chains(trees))))
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_checks_catch_a_detour():
    """What the test above rejects: an import around the faces, a name no face holds, one that does not exist."""
    trees = [ast.parse("import numpy as np\nfrom bintut.integer.fold import (\n    export_resnet,\n)\n"
                       "bintut.integer.fold._fold\nbintut.integer.nothing_here\nbintut.teaching.stages.RAMP")]
    assert len(import_lines(trees)) == 4
    chains = bintut_chains(trees)
    assert chains == {("integer", "fold", "_fold"), ("integer", "nothing_here"), ("teaching", "stages", "RAMP")}
    assert face_problem(("integer", "fold", "_fold")) is None  # a submodule, for bintut.show
    assert face_problem(("integer", "nothing_here")) == "bintut.integer.nothing_here is not on the integer face"
    assert face_problem(("plot_schedules",)) == "bintut.plot_schedules is not on the top-level face"
