"""The package's layers (bintut/__init__.py) hold: who may import whom, the numpy-only integer path, module sizes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bintut"
IDEAS = {"bintut.errors", "bintut.config", "bintut.schedule", "bintut.quant", "bintut.fused_quant", "bintut.model",
         "bintut.binact"}
ENTRY_POINTS = {"bintut", "bintut.__main__", "bintut.cli", "bintut.commands"}
MAX_LINES = 400
# The integer path a microcontroller user runs without torch (engine, kernels, fixed point, format, C export).
NUMPY_ONLY = ("bintut.integer.engine", "bintut.integer.kernels", "bintut.integer.fixedpoint", "bintut.integer.format",
              "bintut.integer.opcount", "bintut.integer.c_source", "bintut.integer.c_library",
              "bintut.integer.c_build", "bintut.integer.onnx_export", "bintut.integer.onnx_compare",
              "bintut.integer.xnor")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    """'ideas', 'files', 'data', 'integer', 'training', 'teaching' or 'entry'."""
    if module in ENTRY_POINTS:
        return "entry"
    if module in IDEAS:
        return "ideas"
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    """Every bintut module a file imports, at the top or inside a function (not under TYPE_CHECKING)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    checking = {id(n) for node in ast.walk(tree)
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bintut"):
            known = _modules()
            for alias in node.names:  # `from bintut.integer import engine` imports bintut.integer.engine
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bintut"))
    return found


# What each layer may import (besides itself); the ideas may import each other and the files layer.
ALLOWED = {
    "ideas": {"ideas", "files"},
    "files": {"ideas"},
    "data": {"ideas", "files"},
    "integer": {"ideas", "files"},
    "training": {"ideas", "files", "data", "integer"},
    "teaching": {"ideas", "files", "data", "integer", "training"},
    "entry": {"ideas", "files", "data", "integer", "training", "teaching", "entry"},
}


def test_every_module_imports_only_the_layers_below_it():
    broken = []
    for module, path in _modules().items():
        layer = _layer(module)
        for imported in _imports(path):
            other = _layer(imported)
            if other != layer and other not in ALLOWED[layer]:
                broken.append(f"{module} ({layer}) imports {imported} ({other})")
    assert not broken, "\n".join(broken)


def test_the_layer_rules_catch_a_forbidden_import(tmp_path):
    """The checker itself: an integer module importing training is reported (so the test above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from bintut.training.loop import train\n")
    assert _imports(bad) == {"bintut.training.loop"}
    assert _layer("bintut.training.loop") not in ALLOWED[_layer("bintut.integer.engine")]


@pytest.mark.parametrize("module", NUMPY_ONLY)
def test_the_integer_path_imports_without_torch_in_under_a_second(module):
    code = (f"import sys, time; t = time.perf_counter(); import {module}; s = time.perf_counter() - t; "
            "heavy = sorted({n.split('.')[0] for n in sys.modules} & {'torch', 'torchvision', 'matplotlib'}); "
            "print(s, ','.join(heavy))")
    seconds, heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=PACKAGE.parent).stdout.split(" ")
    assert heavy.strip() == "", f"{module} loads {heavy.strip()}"
    assert float(seconds) < 1.0, f"import {module} took {float(seconds):.2f} s"


def test_no_module_is_longer_than_the_limit():
    long = {module: n for module, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_command_line_parser_needs_no_torch():
    """``python -m bintut --help`` answers at once: the parser (bintut.cli) loads no torch; a command does."""
    code = "import sys; from bintut.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "False"
