"""Notebook hygiene, without a kernel: names, the parameters cell, stored outputs, size, secrets."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"
MAX_BYTES = 150_000


def test_six_numbered_stages():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_stem.ipynb", "02_baseline.ipynb", "03_sprinkled_binarization.ipynb", "04_int8_activations.ipynb",
        "05_int8_addsub_gemm.ipynb", "06_results.ipynb", "07_integer_only_and_c.ipynb",
    ]
    assert not [p for p in (Path(__file__).parent.parent / "notebooks").iterdir() if p.suffix == ".py"]
    checked = [c for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells
               if c.cell_type == "code" and c.source.startswith(CHECK)]
    assert len(checked) >= 8 and all(c.outputs for c in checked), "nbval must have stored outputs to compare"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_hygiene(path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "What you will learn" in first.source and "Runtime" in first.source
    for mode in ("smoke", "workshop", "full"):
        assert mode in first.source

    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    for node in ast.parse(tagged[0].source).body:  # literals only, as papermill expects
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), ast.dump(node)

    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"stored error output in {path.name}"
        if cell.outputs:
            assert cell.execution_count is not None, "stored output with a null execution count"
            assert cell.source.startswith(CHECK), "only NBVAL_CHECK_OUTPUT cells keep outputs (README rule)"
        text = cell.source
        assert not re.search(r"^\s*[!%]pip", text, re.M), "no !pip / %pip in notebooks"
        assert not re.search(r"['\"](/home|/Users|/root|/tmp|/work|[A-Z]:\\\\)", text), "no absolute paths"
        assert not re.search(r"(api_key|WANDB_API_KEY|token)\s*=", text, re.I), "no tokens"
