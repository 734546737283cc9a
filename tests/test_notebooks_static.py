"""Notebook hygiene, without a kernel: names, the parameters cell, stored outputs, exercises, size, secrets."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"  # text outputs nbval compares
KEEP = "# KEEP_OUTPUT"  # seeded teaching figures/tables/listings, checked by tests/test_book.py
MAX_BYTES = 400_000


def test_six_numbered_stages():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_stem.ipynb", "02_baseline.ipynb", "03_sprinkled_binarization.ipynb", "04_int8_activations.ipynb",
        "05_int8_addsub_gemm.ipynb", "06_results.ipynb", "07_integer_only_and_c.ipynb", "08_fast_addsub.ipynb",
        "09_binary_activations.ipynb",
    ]
    assert not [p for p in (Path(__file__).parent.parent / "notebooks").iterdir() if p.suffix == ".py"]
    cells = [c for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
    checked = [c for c in cells if c.source.startswith(CHECK)]
    assert len(checked) >= 8 and all(c.outputs for c in checked), "nbval must have stored outputs to compare"
    figures = [c for c in cells
               if c.source.startswith(KEEP) and any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(figures) >= 10, f"only {len(figures)} stored teaching figures: the notebooks must read without running"


def _cells(path):
    return nbformat.read(path, as_version=4).cells


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
            assert "Downloading" not in str(out.get("text", "")), "a download line in a stored output"
        if cell.outputs:
            assert cell.execution_count is not None, "stored output with a null execution count"
            assert cell.source.startswith((CHECK, KEEP)), "only NBVAL_CHECK_OUTPUT / KEEP_OUTPUT cells keep outputs"
        if cell.source.startswith(KEEP):
            assert cell.outputs, "a KEEP_OUTPUT cell without stored output: run tools/refresh_notebooks.py"
        text = cell.source
        assert not re.search(r"^\s*[!%]pip", text, re.M), "no !pip / %pip in notebooks"
        assert not re.search(r"['\"](/home|/Users|/root|/tmp|/work|[A-Z]:\\\\)", text), "no absolute paths"
        assert not re.search(r"(api_key|WANDB_API_KEY|token)\s*=", text, re.I), "no tokens"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_recap_and_next(path):
    """2-4 "Try it" tasks, at least one checked (bintut.check or an assert); the answers in one Markdown cell headed
    "## Answers", collapsed in JupyterLab by its metadata (jupyter.source_hidden) and plain Markdown on GitHub and
    in the book (no <details> HTML, which JupyterLab shows raw); a recap; what is next."""
    cells = _cells(path)
    tasks = next(c for c in cells if c.cell_type == "markdown" and c.source.startswith("## Try it"))
    assert 2 <= len(re.findall(r"^\d+\. \*\*", tasks.source, re.M)) <= 4, "2-4 numbered Try-it tasks"
    checked = [c for c in cells if c.cell_type == "code" and c.source.startswith("# Try it")]
    assert checked, "at least one Try-it cell checked by bintut.check"
    for cell in checked:  # the answer stays hidden until the learner has answered
        first = cell.source.splitlines()[0]
        assert re.search(r"^\w+ = \.\.\.", cell.source, re.M), f"{first}: the prediction ships empty (...)"
        assert "bintut.check(" in cell.source, f"{first}: checked by bintut.check, silent until answered"
        assert not re.search(r"^\s*assert\b", cell.source, re.M), f"{first}: an assert states the answer"
        assert not re.search(r"^print\(", cell.source, re.M), f"{first}: prints once answered only"
    cells_code = [c for c in cells if c.cell_type == "code"]
    for i, cell in enumerate(cells_code):
        if cell.source.startswith("# Implement it"):  # a stub, then its check (tests/test_exercises.py fills it)
            assert "raise NotImplementedError" in cell.source, "an implement-it stub ships empty"
            assert "bintut.check_function(" in cells_code[i + 1].source, "an implement-it stub, then its check"
    answers = [c for c in cells if c.cell_type == "markdown" and c.source.startswith("## Answers")]
    hidden = answers and answers[0].metadata.get("jupyter", {}).get("source_hidden")
    assert len(answers) == 1 and hidden, "one '## Answers' cell, collapsed (metadata jupyter.source_hidden)"
    assert not [c for c in cells if "<details>" in c.source], "answers as Markdown, not <details> HTML"
    predictions = [c for c in cells if c.cell_type == "code" and "bintut.check(" in c.source]
    assert all(re.search(r"^\w+ = \.\.\.", c.source, re.M) for c in predictions), "Try-it predictions ship empty (...)"
    recap = [c.source for c in cells if c.cell_type == "markdown" and c.source.startswith("## Recap")]
    assert recap and ("**Next:**" in recap[0] or "## Further reading" in recap[0])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_maths_is_typeset(path):
    """Formulas in LaTeX, not in backticks."""
    markdown = "\n".join(c.source for c in _cells(path) if c.cell_type == "markdown")
    assert "$$" in markdown or path.stem.startswith("06"), "at least one displayed formula"
