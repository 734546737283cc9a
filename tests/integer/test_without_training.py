"""The deployment path is tested without the training stack: collecting tests/integer imports neither
bintut.training nor bintut.teaching, and no test here asks for a trained run (the smoke run's fixture would
import the training stack when it runs, which collecting cannot see)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TRAINING = ("bintut.training", "bintut.teaching")
TRAINED_FIXTURES = {"smoke_run", "cached", "finished", "finished_run"}


def test_collecting_the_integer_tests_imports_no_training_stack():
    code = ("import sys, pytest; rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', "
            f"{str(HERE)!r}]); "
            f"print('LOADED', sorted(m for m in sys.modules if m.startswith({TRAINING!r}))); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "LOADED []" in done.stdout, done.stdout.splitlines()[-1]
    assert "tests collected" in done.stdout


def training_uses(name: str, source: str) -> list[str]:
    """Where ``source`` imports bintut.training or bintut.teaching, or a function asks for a trained-run fixture."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(TRAINING):
            found.append(f"{name}:{node.lineno} imports {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"{name}:{node.lineno} imports {a.name}" for a in node.names if a.name.startswith(TRAINING)]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            asked = {a.arg for a in node.args.args} & TRAINED_FIXTURES
            found += [f"{name}:{node.lineno} {node.name} asks for {fixture}" for fixture in sorted(asked)]
    return found


def test_no_integer_test_imports_or_requests_the_training_stack():
    found = [use for path in sorted(HERE.glob("*.py")) for use in training_uses(path.name, path.read_text())]
    assert not found, "\n".join(found)


def test_the_check_sees_a_training_import_and_a_trained_run():
    """The checker itself: what a training-dependent test would write is reported (so the test above can fail)."""
    source = ("import bintut.teaching.stages\n"
              "def helper():\n    from bintut.training.runs import load_run\n"
              "def test_x(tmp_path, smoke_run):\n    pass\n")
    assert sorted(training_uses("t.py", source)) == ["t.py:1 imports bintut.teaching.stages",
                                             "t.py:3 imports bintut.training.runs",
                                             "t.py:4 test_x asks for smoke_run"]
