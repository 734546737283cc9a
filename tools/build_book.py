"""Build the notebooks into an HTML book (mkdocs + mkdocs-jupyter), every page stamped with its mode and date.

    python tools/build_book.py [--mode smoke|workshop|full] [--out build/book] [--executed DIR]

Executes every numbered notebook (``notebooks/NN_*.ipynb``) top to bottom in the chosen mode (smoke by
default: offline, seconds), or takes already executed copies from ``--executed``; puts a stamp under
each title (the mode the page says it ran in, date, machine, commit, and the data of the training runs it
trained or loaded, read from their config.json), drops widget state (its script would come from a CDN),
renders the cells JupyterLab shows collapsed (the "Answers") as collapsed ``<details>``, writes them to
``OUT/src`` beside the ``docs/*.md`` pages and builds the site into ``OUT/site`` with ``docs/book/mkdocs.yml``.
Open ``OUT/site/index.html``.

The site needs no network: MathJax comes from the PyPI package jupyter-server-mathjax (the 'book' extra)
and is copied into ``OUT/site/assets/mathjax/`` (with ``docs/book/mathjax-book.js``, its settings);
``docs/book/book.css`` fits code and tables to the page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refresh_notebooks import ROOT, execute, notebooks  # noqa: E402

from bintut.data.sets import DATA_SETS  # noqa: E402  (standard library only)

CONFIG = ROOT / "docs" / "book" / "mkdocs.yml"
INDEX = ROOT / "docs" / "book" / "index.md"
CSS = ROOT / "docs" / "book" / "book.css"
MATHJAX_CONFIG = ROOT / "docs" / "book" / "mathjax-book.js"  # the book's MathJax settings (its fonts)
STAMP = "Numbers on this page"
WIDGET = "application/vnd.jupyter.widget-view+json"
# What a mode's numbers are worth, for a page that trained or loaded runs (the data they used comes from the runs).
MODE_NOTES = {
    "smoke": "Smoke-mode runs train a few steps: their accuracies sit near chance level and say only that the "
             "machinery runs, nothing about CIFAR-100.",
    "workshop": "Workshop-mode runs train a few epochs on a subset on a CPU: far from the full recipe.",
    "full": "Full-mode runs follow the reference recipe.",
}
DOCS = ROOT / "docs"  # its *.md pages join the book beside the notebooks
# The docs pages in the book's order (README.md, "Where the rest is"); a page not listed follows, by name.
GUIDE = ("cli.md", "data.md", "notebooks.md", "library.md", "recipe.md", "accuracy.md", "faults.md", "integer.md",
         "benchmarks.md", "fast_training.md", "results.md", "contributing.md")
# The lines bintut.teaching prints (stages.mode_line, stages.run_stage, record.Recording.source) that say what a
# notebook ran: its mode, the run folders it trained or loaded, a recording it shows.
MODE_LINE = re.compile(r"^running in (smoke|workshop|full) mode", re.M)
RUN_LINE = re.compile(r"^([\w-]+): (?:training \d+ epochs on .+? -> |loading the finished run )(.+?)"
                      r"(?: \(delete the folder to train again\))?$", re.M)
RECORDING_LINE = re.compile(r"^(.+ \(\S+ training / \S+ test images\)), recorded (\S+) on (.+), commit \S+$", re.M)


MATHJAX = "assets/mathjax"  # where the site holds MathJax (docs/book/mkdocs.yml's custom_mathjax_url points there)


def mathjax_files() -> Path:
    """The MathJax 2.7 folder that the PyPI package jupyter-server-mathjax ships (MathJax.js, config/, jax/, fonts/).

    Found without importing the package (its __init__ imports jupyter_server). Raises SystemExit with a one-line
    message when it is not installed.
    """
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" if spec else None
    if folder is None or not (folder / "MathJax.js").is_file():
        raise SystemExit("build_book: error: the book's maths renderer is missing: pip install "
                         "jupyter-server-mathjax (the 'book' extra: pip install -e '.[book]'; make installs it)")
    return folder


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = ""
    if shutil.which("nvidia-smi"):
        found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout.strip()
        gpu = f", {found.splitlines()[0].split(' (')[0]}" if found else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"


def commit() -> str:
    found = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                           text=True, check=False)
    return found.stdout.strip() or "unknown"


def printed(nb) -> str:
    """Everything the notebook's code cells printed (stdout), one text."""
    return "".join(o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream" and o.name == "stdout")


def run_data(config: dict) -> str:
    """A run's data in words, from its config.json: e.g. 'Fashion-MNIST (2,000 training / 500 test images)'."""
    name = config.get("data", "?")
    title = DATA_SETS[name].title if name in DATA_SETS else name
    train, test = ((config.get("synthetic_train"), config.get("synthetic_test")) if name == "synthetic"
                   else (config.get("train_subset"), config.get("test_subset")))
    sizes = " / ".join(f"{n:,} {what}" for n, what in ((train, "training"), (test, "test")) if n)
    return f"{title} ({sizes} images)" if sizes else f"{title} (all images)"


def page_runs(nb, cwd: Path) -> dict[str, list[str]]:
    """The runs a notebook trained or loaded, as {data in words: [stage (epochs), ...]}, read from each run
    folder's config.json (a run folder printed relative to the notebook's folder ``cwd``); a folder without one
    counts as 'data not recorded'."""
    found: dict[str, list[str]] = {}
    for stage, folder in dict(RUN_LINE.findall(printed(nb))).items():
        try:
            config = json.loads((cwd / folder / "config.json").read_text())
        except (OSError, ValueError):
            found.setdefault("data not recorded", []).append(stage)
            continue
        found.setdefault(run_data(config), []).append(f"{stage} ({config.get('epochs', '?')} epochs)")
    return found


def stamp_text(nb, mode: str, when: dt.datetime, cwd: Path) -> str:
    """The stamp under a page's title: the mode the notebook says it ran in (else ``mode``), date, machine and
    commit; the data of the runs it trained or loaded (run folders relative to ``cwd``, the notebook's folder),
    or that it trained none; a recording it shows."""
    said = MODE_LINE.search(printed(nb))
    mode = said.group(1) if said else mode
    text = (f"> **{STAMP}** come from executing this notebook in **{mode}** mode on {when:%Y-%m-%d %H:%M} UTC "
            f"({machine()}; bintut commit {commit()}).")
    runs = page_runs(nb, cwd)
    if runs:
        text += " Its training runs (trained here or loaded from the run cache): " + "; ".join(
            f"{', '.join(stages)} on {data}" for data, stages in runs.items()) + f". {MODE_NOTES[mode]}"
    else:
        text += " It trains no network and loads no trained run."
    for data, date, where in dict.fromkeys(RECORDING_LINE.findall(printed(nb))):
        text += f" It also shows a recording made elsewhere, not by this execution: {data}, {date} on {where}."
    return text


def collapse(cell) -> None:
    """A Markdown cell that JupyterLab shows collapsed (``metadata.jupyter.source_hidden``, the "Answers") as a
    closed ``<details>``: its heading is the summary, the rest opens on a click."""
    first, _, rest = cell.source.partition("\n")
    title = first.lstrip("#").strip() if first.startswith("#") else "Show"
    body = rest if first.startswith("#") else cell.source
    cell.source = (f'<details class="collapsed-cell"><summary>{html.escape(title)}</summary>\n\n{body.strip()}'
                   "\n\n</details>")


def prepare(nb, mode: str, when: dt.datetime, cwd: Path = ROOT / "notebooks"):
    """Stamp under the title (run folders read relative to ``cwd``, where the notebook ran); drop widget state
    and progress bars (widgets, or text redrawn with \\r); collapse what JupyterLab collapses."""
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(stamp_text(nb, mode, when, cwd)))
    nb.metadata.pop("widgets", None)  # tqdm's widget state: the page would load the widgets' script from a CDN
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})
                            and not (o.output_type == "stream" and o.name == "stderr" and "it/s]" in o.text)]
        elif cell.cell_type == "markdown" and cell.metadata.get("jupyter", {}).get("source_hidden"):
            collapse(cell)
    return nb


def guide(folder: Path = DOCS) -> list[Path]:
    """The docs/*.md pages the book renders beside the notebooks, in GUIDE's order, then any other by name."""
    pages = sorted(folder.glob("*.md"))
    return sorted(pages, key=lambda p: (GUIDE.index(p.name) if p.name in GUIDE else len(GUIDE), p.name))


def title_of(page: Path) -> str:
    """A Markdown page's title: its first '# ' heading without code ticks (else its file name)."""
    heads = [ln[2:].strip().replace("`", "") for ln in page.read_text().splitlines() if ln.startswith("# ")]
    return heads[0] if heads else page.stem


def build(mode: str = "smoke", out: Path = ROOT / "build" / "book", executed: Path | None = None) -> Path:
    """Execute (or take) the notebooks, stamp them and build the site; returns the site folder."""
    src, site = out / "src", out / "site"
    mathjax = mathjax_files()  # before the minutes of executing: fail at once when it is missing
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    pages = []
    for path in notebooks():
        when = dt.datetime.now(dt.timezone.utc)
        if executed is not None:
            nb = nbformat.read(executed / path.name, as_version=4)
            when = dt.datetime.fromtimestamp((executed / path.name).stat().st_mtime, dt.timezone.utc)
        else:
            started = time.perf_counter()
            nb = execute(path, mode, cwd=path.parent)
            print(f"{path.name}: executed in {mode} mode in {time.perf_counter() - started:.1f} s", flush=True)
        nbformat.write(prepare(nb, mode, when, cwd=path.parent), src / path.name)
        title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip()
        pages.append({title: path.name})
    shutil.copy(INDEX, src / "index.md")
    shutil.copy(CSS, src / CSS.name)
    docs = []
    for page in guide():
        shutil.copy(page, src / page.name)  # the docs link to each other by file name: the links hold here too
        docs.append({title_of(page): page.name})
    config = yaml.safe_load(CONFIG.read_text())
    config |= {"docs_dir": str(src.resolve()), "site_dir": str(site.resolve()),
               "nav": [{"Introduction": "index.md"}, *pages, {"Guide": docs}]}
    generated = out / "mkdocs.yml"
    generated.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "--clean", "-f", str(generated)],
                   check=True, cwd=out, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    shutil.copytree(mathjax, site / MATHJAX, dirs_exist_ok=True)
    (site / MATHJAX / "config" / "local").mkdir(exist_ok=True)
    shutil.copy(MATHJAX_CONFIG, site / MATHJAX / "config" / "local" / "book.js")
    return site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=tuple(MODE_NOTES), default="smoke")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book")
    parser.add_argument("--executed", type=Path, help="folder of executed notebooks to use instead of executing")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    site = build(args.mode, args.out, args.executed)
    print(f"book built in {time.perf_counter() - started:.1f} s: {site / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
