"""The notebooks executed in smoke mode: kept outputs reproduce, and the rendered book shows every figure.

Executes each numbered notebook once (training runs are shared with nbval through the run cache in
notebooks/runs/, so whichever runs second only loads them) and reuses the executed copies for both checks.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from build_book import STAMP, build  # noqa: E402
from refresh_notebooks import execute, kept, notebooks, output_differences  # noqa: E402

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("executed")
    for path in notebooks():
        nbformat.write(execute(path, "smoke", cwd=path.parent), out / path.name)
    return out


def test_kept_outputs_are_what_a_fresh_run_gives(executed):
    """KEEP_OUTPUT and NBVAL_CHECK_OUTPUT cells must come out as committed (else: tools/refresh_notebooks.py)."""
    problems = []
    for path in notebooks():
        committed = nbformat.read(path, as_version=4).cells
        fresh = nbformat.read(executed / path.name, as_version=4).cells
        assert len(committed) == len(fresh)
        for i, (a, b) in enumerate(zip(committed, fresh, strict=True)):
            if kept(a):
                problems += [f"{path.name} cell {i}: {p}" for p in output_differences(a, b)]
    assert not problems, "stale kept outputs; run python tools/refresh_notebooks.py:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def site(executed, tmp_path_factory) -> Path:
    """The book built once from the executed notebooks."""
    for package in ("mkdocs_jupyter", "jupyter_server_mathjax"):
        pytest.importorskip(package, reason="the book needs the 'book' extra: pip install -e '.[book]'")
    return build("smoke", tmp_path_factory.mktemp("book") / "book", executed=executed)


def test_book_pages_have_their_figures(executed, site):
    assert (site / "index.html").is_file()
    for path in notebooks():
        nb = nbformat.read(executed / path.name, as_version=4)
        figures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert figures >= 1, f"{path.name} draws no figure"
        assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        html = (site / path.stem / "index.html").read_text()
        shown = len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", html))
        assert shown >= figures, f"{path.stem}: {shown} of {figures} figures on the page"
        assert STAMP in html and "smoke</strong> mode" in html, f"{path.stem}: no mode/date stamp"


def test_book_renders_maths_offline(site):
    """No page loads a script from the network; each notebook page loads MathJax from a file in the site."""
    pages = sorted(site.glob("**/*.html"))
    remote = [f"{page.relative_to(site)}: {src}" for page in pages
              for src in re.findall(r"<script[^>]*\bsrc=[\"']?((?:https?:)?//[^\"' >]+)", page.read_text())]
    assert not remote, "scripts from the network:\n" + "\n".join(remote)
    for path in notebooks():
        page = site / path.stem / "index.html"
        found = re.findall(r"<script[^>]*\bsrc=\"([^\"]*MathJax\.js[^\"]*)\"", page.read_text())
        assert len(found) == 1, f"{path.stem}: {len(found)} MathJax scripts"
        script, _, query = found[0].partition("?config=")
        mathjax = (page.parent / script).resolve()
        assert mathjax.is_file(), f"{path.stem}: {script} is not in the site"
        for name in query.split(","):  # MathJax loads [MathJax]/config/NAME.js for each
            assert (mathjax.parent / "config" / f"{name}.js").is_file(), f"{path.stem}: no MathJax config {name}"
    assert (site / "book.css").is_file()
