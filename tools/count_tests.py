"""Count the test suite so that a reorganisation can be compared before and after.

    python tools/count_tests.py [--by-file] [--no-collect] [tests]

Prints three numbers for a tests folder (default ``tests``):

* ``collected`` -- the test items pytest collects (``pytest --collect-only -q``; parametrized cases count
  one each), run in a subprocess with ``BINTUT_MODE=smoke`` so nothing heavy is configured;
* ``asserts`` -- ``assert`` statements, counted in the source by AST (an assert in a helper counts once);
* ``raises`` -- ``pytest.raises`` / ``pytest.warns`` uses (``with`` blocks and calls), also by AST.

``--by-file`` adds one line per file with its test functions (``def test_*``, by AST), asserts and raises.
``--no-collect`` skips the pytest subprocess (the AST counts take a second; collecting imports the library).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {"raises", "warns"}


def count_file(path: Path) -> dict[str, int]:
    """For one test file: its ``def test_*`` functions, ``assert`` statements and ``pytest.raises``/``warns``
    uses (``pytest.raises(...)`` and a bare ``raises(...)`` imported from pytest both count)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    tests = asserts = raises = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            tests += 1
        elif isinstance(node, ast.Assert):
            asserts += 1
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CHECKS and ast.unparse(func.value) == "pytest":
                raises += 1
    return {"tests": tests, "asserts": asserts, "raises": raises}


def collected(folder: Path) -> int:
    """The number of test items ``pytest --collect-only`` reports for ``folder``.

    Raises:
        RuntimeError: if pytest's summary line holds no count (a collection error, say).
    """
    env = dict(os.environ, BINTUT_MODE="smoke", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(folder)], capture_output=True, text=True, cwd=ROOT, env=env).stdout
    found = re.search(r"(\d+) tests? collected", out) or re.search(r"^(\d+) tests?", out, re.M)
    if found is None or "error" in out.splitlines()[-1]:
        raise RuntimeError(f"pytest could not collect {folder}:\n{out[-2000:]}")
    return int(found.group(1))


def main(argv: list[str]) -> None:
    folder = Path(next((a for a in argv if not a.startswith("--")), "tests"))
    files = sorted(p for p in (ROOT / folder).rglob("*.py") if "fixtures" not in p.parts)
    totals = {"tests": 0, "asserts": 0, "raises": 0}
    for path in files:
        counts = count_file(path)
        for key in totals:
            totals[key] += counts[key]
        if "--by-file" in argv and any(counts.values()):
            print(f"{path.relative_to(ROOT)}: {counts['tests']} tests, {counts['asserts']} asserts, "
                  f"{counts['raises']} raises")
    if "--no-collect" not in argv:
        print(f"collected {collected(folder)}")
    print(f"test functions {totals['tests']}")
    print(f"asserts {totals['asserts']}")
    print(f"raises {totals['raises']}")


if __name__ == "__main__":
    main(sys.argv[1:])
