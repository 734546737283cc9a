"""Docstrings that stay true: every object a notebook shows says where it is taught; the teaching primitives'
examples (quantizers, kernels, fixed point) run as doctests."""

from __future__ import annotations

import doctest
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DOCTESTED = ("bintut.quant", "bintut.integer.kernels", "bintut.integer.fixedpoint")


def _shown(notebook: Path) -> list[str]:
    """The dotted names a notebook passes to bintut.show, with its module aliases spelled out."""
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    aliases = {}
    for m in re.finditer(r"^from (bintut[\w.]*) import ([\w, ]+)$", code, flags=re.M):
        for name in m.group(2).split(","):
            aliases[name.strip()] = f"{m.group(1)}.{name.strip()}"
    names = []
    for m in re.finditer(r"bintut\.show\(([^)]*)\)", code):
        for arg in m.group(1).split(","):
            head, _, rest = arg.strip().partition(".")
            names.append(f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head))
    return names


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_what_a_notebook_shows_says_where_it_is_taught(notebook):
    missing = [name for name in _shown(notebook)
               if f"Taught in notebooks/{notebook.name}" not in (_resolve(name).__doc__ or "")]
    assert not missing, f"docstrings without 'Taught in notebooks/{notebook.name}': {missing}"


def test_the_notebooks_show_some_library_code():
    assert sum(len(_shown(nb)) for nb in NOTEBOOKS) >= 10


@pytest.mark.parametrize("module", DOCTESTED)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
