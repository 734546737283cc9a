"""Docstrings that stay true: every object a notebook shows says where it is taught; the teaching primitives'
examples (quantizers, kernels, fixed point) run as doctests."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DOCTESTED = ("bintut.quant", "bintut.integer.kernels", "bintut.integer.fixedpoint", "bintut.binact",
             "bintut.integer.xnor")


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


# --- Public functions say what they raise -------------------------------------------------------------------------

PACKAGE = ROOT / "bintut"
ERROR_SUFFIXES = ("Error", "Exception", "NotFound", "Incomplete", "Diverged")


def _public_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Module-level functions and methods of module-level classes (nested too) whose names have no leading
    underscore, with their qualified names; functions inside functions are not public."""
    found = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                found.append((f"{prefix}{node.name}", node))

    visit(tree.body, "")
    return found


def _direct_raises(function: ast.FunctionDef | ast.AsyncFunctionDef, errors: set[str]) -> set[str]:
    """The exception classes a function's own body raises by name (``raise X(...)``, ``raise X``,
    ``raise module.X(...)``, with or without ``from``), not in nested functions or classes. A bare ``raise`` or
    ``raise err`` re-raises a caught exception and is not counted: its name is not an error class's."""
    raised: set[str] = set()
    todo = list(ast.iter_child_nodes(function))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name and (name.endswith(ERROR_SUFFIXES) or name in errors):
                raised.add(name)
    return raised


def _undocumented_raises(sources: dict[str, str]) -> list[str]:
    """``module.function: raises X, Y but its docstring names neither`` for every public function of the given
    sources (module name → source text) that raises an error class its docstring does not name."""
    trees = {module: ast.parse(text) for module, text in sources.items()}
    defined = {node.name for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    offenders = []
    for module, tree in trees.items():
        for name, function in _public_functions(tree):
            doc = ast.get_docstring(function) or ""
            missing = sorted(e for e in _direct_raises(function, defined) if not re.search(rf"\b{e}\b", doc))
            if missing:
                offenders.append(f"{module}.{name}: raises {', '.join(missing)}, not named in its docstring")
    return offenders


def _package_sources() -> dict[str, str]:
    """Every public bintut module's source (no part of its dotted name starts with a single underscore)."""
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith("_") and not p.startswith("__") for p in parts):
            continue
        sources[".".join(parts)] = path.read_text()
    return sources


def test_public_functions_name_what_they_raise():
    offenders = _undocumented_raises(_package_sources())
    assert not offenders, f"{len(offenders)} public functions raise without saying so:\n" + "\n".join(offenders)


def test_the_raise_checker_catches_an_undocumented_raise():
    """The checker itself (so the test above can fail): an undocumented raise is reported; a documented one,
    a re-raise, a private function and a raise inside a nested function are not."""
    snippet = '''
class OddError(ValueError):
    pass

class Thing:
    def method(self):
        """Checks."""
        raise OddError("odd")

def said(x):
    """Raises KeyError when x is missing."""
    raise KeyError(x)

def reraised():
    """Tries."""
    try:
        pass
    except OSError as err:
        raise err from None

def nested():
    """Wraps."""
    def inner():
        raise ValueError("inner")
    return inner

def _private():
    raise ValueError("private")

def silent(x):
    """Converts."""
    if x:
        raise errors.ExportError("bad") from x
    raise OddError
'''
    assert _undocumented_raises({"m": snippet}) == [
        "m.Thing.method: raises OddError, not named in its docstring",
        "m.silent: raises ExportError, OddError, not named in its docstring",
    ]
