"""Execute the notebooks in smoke mode and keep only the outputs nbval compares.

    python tools/refresh_notebooks.py [notebooks/NN_name.ipynb ...]

The committed notebooks store outputs only in cells marked ``# NBVAL_CHECK_OUTPUT`` -- outputs that
are identical in every mode (shapes, counts, fixed tensors) -- so no stored number claims to come
from a mode that did not produce it. Every other cell is committed without outputs. Prints each
notebook's smoke-mode time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHECK = "# NBVAL_CHECK_OUTPUT"


def refresh(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - started
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.source.startswith(CHECK):
            count += 1
            cell.execution_count = count
        else:
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    os.environ.setdefault("BINTUT_MODE", "smoke")
    paths = [Path(p) for p in argv] or sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        print(f"{path}: {refresh(path):.1f} s in {os.environ['BINTUT_MODE']} mode", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
