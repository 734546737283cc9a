"""Build the notebooks into an HTML book (mkdocs + mkdocs-jupyter), every page stamped with its mode and date.

    python tools/build_book.py [--mode smoke|workshop|full] [--out build/book] [--executed DIR]

Executes every numbered notebook (``notebooks/NN_*.ipynb``) top to bottom in the chosen mode (smoke by
default: offline, seconds), or takes already executed copies from ``--executed``; puts a stamp under
each title (mode, date, machine, commit), writes them to ``OUT/src`` and builds the site into
``OUT/site`` with ``docs/book/mkdocs.yml``. Open ``OUT/site/index.html``.

The site needs no network: MathJax comes from the PyPI package jupyter-server-mathjax (the 'book' extra)
and is copied into ``OUT/site/assets/mathjax/`` (with ``docs/book/mathjax-book.js``, its settings);
``docs/book/book.css`` fits code and tables to the page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refresh_notebooks import ROOT, execute, notebooks  # noqa: E402

CONFIG = ROOT / "docs" / "book" / "mkdocs.yml"
INDEX = ROOT / "docs" / "book" / "index.md"
CSS = ROOT / "docs" / "book" / "book.css"
MATHJAX_CONFIG = ROOT / "docs" / "book" / "mathjax-book.js"  # the book's MathJax settings (its fonts)
STAMP = "Numbers on this page"
WIDGET = "application/vnd.jupyter.widget-view+json"
MODE_NOTES = {
    "smoke": "Smoke mode trains each stage for four steps on 32 synthetic images generated offline: its accuracies "
             "sit at chance level and say only that the machinery runs, nothing about CIFAR-100.",
    "workshop": "Workshop mode trains on a CIFAR-100 subset on a CPU for a few epochs: far from the full recipe.",
    "full": "Full mode runs the reference recipe on CIFAR-100.",
}


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


def stamp_text(mode: str, when: dt.datetime) -> str:
    return (f"> **{STAMP}** come from executing this notebook in **{mode}** mode on {when:%Y-%m-%d %H:%M} UTC "
            f"({machine()}; bintut commit {commit()}). {MODE_NOTES[mode]}")


def prepare(nb, mode: str, when: dt.datetime):
    """Stamp under the title; drop progress bars (widgets without state, or text redrawn with \\r)."""
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(stamp_text(mode, when)))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})
                            and not (o.output_type == "stream" and o.name == "stderr" and "it/s]" in o.text)]
    return nb


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
        nbformat.write(prepare(nb, mode, when), src / path.name)
        title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip()
        pages.append({title: path.name})
    shutil.copy(INDEX, src / "index.md")
    shutil.copy(CSS, src / CSS.name)
    config = yaml.safe_load(CONFIG.read_text())
    config |= {"docs_dir": str(src.resolve()), "site_dir": str(site.resolve()),
               "nav": [{"Introduction": "index.md"}, *pages]}
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
