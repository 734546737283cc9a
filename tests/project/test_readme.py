"""The README is a front page, and the docs/ pages behind it link to each other and nowhere else.

README.md stays at most 6,500 bytes; every relative link in README.md and docs/*.md reaches an existing file, and
an anchor a heading there (under GitHub's and under the book's heading ids, so that a link works in both); the
docs/ pages link only to docs/ pages, which the book renders beside the notebooks (tools/build_book.py), so that
every link works offline in the book; every `make TARGET` the README names is a target of the Makefile, and the
test command the README gives is the one CI runs.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_LIMIT = 6500  # bytes (issue 28: "a front page of at most about 6 KB")

LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")  # [text](target), not images
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """Markdown without code blocks and code spans (a link written inside code is no link)."""
    return CODE.sub("", FENCE.sub("", text))


def heading_text(line: str) -> str:
    """A heading's visible text: without the #s, code ticks, emphasis and link targets."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line.lstrip("#").strip())
    return text.replace("`", "").replace("**", "").replace("*", "")


def github_id(text: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def book_id(text: str) -> str:
    """The id the book (mkdocs, Python-Markdown's toc extension) gives a heading: its slugify."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def anchors(path: Path) -> set[str]:
    """The heading ids that both GitHub and the book give the headings of ``path``."""
    heads = [heading_text(ln) for ln in FENCE.sub("", path.read_text()).splitlines() if re.match(r"#{1,6} ", ln)]
    return {github_id(h) for h in heads} & {book_id(h) for h in heads}


def links(path: Path) -> list[str]:
    """The relative link targets in ``path`` (not http(s), mailto or other schemes)."""
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken(path: Path, root: Path = ROOT) -> list[str]:
    """Links of ``path`` whose file or anchor is missing, each as 'path: target (why)', the path relative to
    ``root``."""
    problems = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        name = f"{path.relative_to(root)}: {target}"
        if not dest.exists():
            problems.append(f"{name} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{name} (no heading with that id on GitHub and in the book)")
    return problems


def test_readme_is_a_front_page():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes (at most {README_LIMIT}): move a section to docs/"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    assert not broken(path), "broken links:\n" + "\n".join(broken(path))


def test_docs_pages_link_only_to_docs_pages():
    """The book holds the docs/*.md pages and the notebooks, nothing else of the repository."""
    pages = {p.resolve() for p in DOCS}
    outside = [f"{p.name}: {t}" for p in DOCS for t in links(p)
               if t.partition("#")[0] and (p.parent / t.partition("#")[0]).resolve() not in pages]
    assert not outside, "links out of docs/ (they break in the book):\n" + "\n".join(outside)


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    missing = [p.name for p in DOCS if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not point to: {missing}"


def test_link_check_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `seed` heading, side by side\n\n[ok](#a-seed-heading-side-by-side) [bad](#nowhere) "
                    "[gone](missing.md) `[code](missing.md)` [web](https://example.org)\n")
    assert broken(page, root=tmp_path) == ["page.md: #nowhere (no heading with that id on GitHub and in the book)",
                                           "page.md: missing.md (no such file)"]


def test_heading_ids_agree_or_are_not_linkable():
    """A heading whose GitHub and book ids differ (e.g. '+' between words) is no anchor for the check."""
    assert github_id("xnor + popcount") == "xnor--popcount" and book_id("xnor + popcount") == "xnor-popcount"
    assert github_id("Recorded results (Fashion-MNIST, CPU)") == book_id("Recorded results (Fashion-MNIST, CPU)") \
        == "recorded-results-fashion-mnist-cpu"


def test_readme_commands_are_the_makefiles():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README.read_text()))
    assert {"reproduce", "lab", "test"} <= named, "the README names the two commands and the test command"
    assert named <= targets, f"the README names make targets the Makefile lacks: {sorted(named - targets)}"
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M), "CI runs make test"
    assert re.search(r"^```bash\nmake test\b.*what CI runs", README.read_text(), re.M), "the README's test command"
