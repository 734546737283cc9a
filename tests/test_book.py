"""The notebooks executed in smoke mode: kept outputs reproduce, and the rendered book shows every figure.

Executes each numbered notebook once (training runs are shared with nbval through the run cache in
notebooks/runs/, so whichever runs second only loads them) and reuses the executed copies for both checks.
The book's pieces (stamps, widget state, collapsed answers, the docs pages) are also tested alone, without
executing anything.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from build_book import STAMP, WIDGET, build, guide, prepare, stamp_text, title_of  # noqa: E402
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
    assert not [p for p in pages if remote_loads(p.read_text())], "pages that load from the network: " + ", ".join(
        f"{p.relative_to(site)}: {remote_loads(p.read_text())}" for p in pages if remote_loads(p.read_text()))


def test_book_renders_the_docs_pages(site):
    """Every docs/*.md page is a page of the book, its links to other docs pages resolve inside the site."""
    for page in guide():
        html = (site / page.stem / "index.html").read_text()
        assert title_of(page) in html, f"{page.name}: its title is not on its page"
        for href in re.findall(r'<a[^>]+href="([^"#:]+/)(?:#[^"]*)?"', html):  # links to other pages
            assert (site / page.stem / href / "index.html").resolve().is_file(), f"{page.name}: {href} missing"
    index = (site / "index.html").read_text()
    assert all(f'href="{page.stem}/"' in index for page in guide()), "the navigation lists every docs page"


def test_book_pages_collapse_answers_and_say_what_they_ran(site):
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        hidden = sum(c.cell_type == "markdown" and bool(c.metadata.get("jupyter", {}).get("source_hidden"))
                     for c in nb.cells)
        html = (site / path.stem / "index.html").read_text()
        assert html.count('<details class="collapsed-cell">') == hidden >= 1, f"{path.stem}: answers not collapsed"
    assert "trains no network" in (site / "08_fast_addsub" / "index.html").read_text()
    assert "Its training runs" in (site / "05_int8_addsub_gemm" / "index.html").read_text()


# A remote load in a page: a script, a style sheet or an icon from another host, or a script of the page that
# fetches one. nbconvert's Mermaid loader holds a CDN address but imports it only for diagrams on the page.
REMOTE = re.compile(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}/[^\s"'<>)]*""")
MERMAID_GUARD = 'document.querySelectorAll(".jp-Mermaid > pre.mermaid")'


def remote_loads(html: str) -> list[str]:
    """What a page would load from the network: addresses in src/href of scripts, style sheets and icons, and in
    its inline scripts and styles (the Mermaid loader counts only when the page holds a diagram)."""
    found = re.findall(r"<(?:script|img|iframe)[^>]*\bsrc=[\"']?((?:https?:)?//[^\"' >]+)", html)
    found += [href for tag in re.findall(r"<link[^>]*>", html) if re.search(r"rel=\"?(?:stylesheet|icon|preload|"
              r"modulepreload|prefetch)", tag) for href in re.findall(r"href=\"((?:https?:)?//[^\"]+)\"", tag)]
    for block in re.findall(r"<(?:script|style)\b[^>]*>(.*?)</(?:script|style)>", html, re.S):
        if MERMAID_GUARD in block and 'class="jp-Mermaid' not in html:
            continue
        found += [u for u in REMOTE.findall(block) if not u.startswith(("http://www.w3.org/", "//www.w3.org/"))]
    return found


def test_remote_loads_are_found():
    widgets = ('<script>(function() { var s = document.createElement("script"); '
               's.src = "https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js"; })()</script>')
    assert remote_loads(widgets) == ["https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js"]
    assert remote_loads('<script src="https://cdn.example.org/a.js"></script>') == ["https://cdn.example.org/a.js"]
    assert remote_loads('<link rel="stylesheet" href="//fonts.example.com/css">') == ["//fonts.example.com/css"]
    mermaid = (f'<script type="module">const d = {MERMAID_GUARD};'
               ' await import("https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs")</script>')
    assert remote_loads(mermaid) == []
    assert remote_loads(mermaid + '<div class="jp-Mermaid"><pre class="mermaid">graph TD</pre></div>') != []
    assert remote_loads('<a href="https://example.org/paper">a link</a><script src="../assets/x.js"></script>') == []


def fake_notebook(printed: str, **metadata):
    """A notebook with a title, one code cell that printed ``printed``, and collapsed answers."""
    code = nbformat.v4.new_code_cell("print(...)")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed),
                    nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "abc"}, "text/plain": "bar"})]
    answers = nbformat.v4.new_markdown_cell("## Answers\n1. **Yes**: $p = \\mathrm{bin\\_ratio} = 1$.",
                                            metadata={"jupyter": {"source_hidden": True}})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 — a page"), code, answers])
    nb.metadata |= metadata
    return nb


WHEN = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)


def test_prepare_drops_widget_state_and_collapses_answers():
    nb = prepare(fake_notebook("hello\n", widgets={"application/vnd.jupyter.widget-state+json": {}}), "smoke",
                 WHEN)
    assert "widgets" not in nb.metadata
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if WIDGET in o.get("data", {})]
    answers = nb.cells[-1].source
    assert answers.startswith('<details class="collapsed-cell"><summary>Answers</summary>\n\n1. **Yes**')
    assert answers.endswith("\n\n</details>") and "## Answers" not in answers
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    rendered = markdown2html_mistune(answers)  # the Markdown inside <details> is still rendered
    assert "<summary>Answers</summary>" in rendered and "<strong>Yes</strong>" in rendered


def test_committed_notebooks_hold_no_widget_state_and_collapse_their_answers():
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        assert "widgets" not in nb.metadata, f"{path.name}: widget state in its metadata (tools/refresh_notebooks.py)"
        answers = [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Answers")]
        assert answers and all(c.metadata.get("jupyter", {}).get("source_hidden") for c in answers), path.name
        prepared = prepare(nb, "smoke", WHEN, path.parent)
        assert sum("<summary>Answers</summary>" in c.source for c in prepared.cells) == len(answers), path.name


def test_notebook_maths_writes_no_escaped_underscore_in_text():
    """MathJax shows \\_ inside \\text{} as a backslash and an underscore (06 once showed 'bin\\_ratio')."""
    found = [f"{path.name}: {m}" for path in notebooks() for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "markdown" for m in re.findall(r"\\text\{[^}]*\\_[^}]*\}", c.source)]
    assert not found, "write \\mathrm{a\\_b} instead:\n" + "\n".join(found)


def run_folder(cwd: Path, name: str, **config) -> str:
    (cwd / "runs" / name).mkdir(parents=True)
    (cwd / "runs" / name / "config.json").write_text(json.dumps(config))
    return f"runs/{name}"


def test_stamp_names_the_data_each_page_used(tmp_path):
    """`make book MODE=workshop` on a machine with Fashion-MNIST only: the stamp names Fashion-MNIST."""
    base = run_folder(tmp_path, "workshop-baseline-1", data="fashion-mnist", train_subset=2000, test_subset=500,
                      epochs=4)
    both = run_folder(tmp_path, "workshop-both-2", data="fashion-mnist", train_subset=2000, test_subset=500,
                      epochs=4)
    printed = ("running in workshop mode on Fashion-MNIST (no CIFAR-100 in data): 2,000 training images\n"
               f"baseline: loading the finished run {base} (delete the folder to train again)\n"
               f"both: training 4 epochs on Fashion-MNIST (2000 training images) -> {both}\n"
               "Fashion-MNIST (6000 training / 2000 test images), recorded 2026-12-05 on a 2-core Xeon, commit ab12\n")
    stamp = stamp_text(fake_notebook(printed), "workshop", WHEN, tmp_path)
    assert "**workshop** mode on 2026-12-06 12:00 UTC" in stamp
    assert ("Its training runs (trained here or loaded from the run cache): baseline (4 epochs), both (4 epochs) "
            "on Fashion-MNIST (2,000 training / 500 test images).") in stamp
    assert "CIFAR-100" not in stamp
    assert ("It also shows a recording made elsewhere, not by this execution: Fashion-MNIST (6000 training / 2000 "
            "test images), 2026-12-05 on a 2-core Xeon.") in stamp


def test_stamp_of_a_page_that_trains_nothing_says_so(tmp_path):
    """08 builds a random calibrated model: its stamp names no training data and no stage."""
    stamp = stamp_text(fake_notebook("running in smoke mode\nall layers agree\n"), "workshop", WHEN, tmp_path)
    assert "**smoke** mode" in stamp, "the mode the page says it ran in"
    assert stamp.endswith("It trains no network and loads no trained run.")
    assert "synthetic" not in stamp and "CIFAR-100" not in stamp


def test_stamp_of_smoke_runs_names_their_synthetic_data(tmp_path):
    folder = run_folder(tmp_path, "smoke-both-3", data="synthetic", synthetic_train=32, synthetic_test=16, epochs=2)
    stamp = stamp_text(fake_notebook(f"running in smoke mode: synthetic data\nboth: loading the finished run "
                                     f"{folder} (delete the folder to train again)\n"), "smoke", WHEN, tmp_path)
    assert "both (2 epochs) on synthetic data (32 training / 16 test images). Smoke-mode runs" in stamp


def test_docs_pages_join_the_book_in_the_readme_order():
    pages = guide()
    assert {p.name for p in pages} == {p.name for p in (ROOT / "docs").glob("*.md")}
    assert [p.name for p in pages][:3] == ["cli.md", "data.md", "notebooks.md"]
    assert title_of(ROOT / "docs" / "recipe.md") == "seed and the reference, side by side"
