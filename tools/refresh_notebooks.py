"""Execute the notebooks in smoke mode and keep only the outputs that are the same in every mode.

    python tools/refresh_notebooks.py [notebooks/NN_name.ipynb ...]

Two markers, each the first line of a code cell, decide which outputs the committed notebooks keep:

* ``# NBVAL_CHECK_OUTPUT`` -- text identical in every mode (shapes, counts, fixed tensors); nbval
  compares it on every CI run.
* ``# KEEP_OUTPUT`` -- seeded teaching figures, tables and ``bintut.show`` listings, also the same in
  every mode, kept so that a notebook reads well without running it (on GitHub, say). nbval does not
  compare them (it skips images); ``tests/test_book.py`` re-executes the notebooks and checks that
  each kept output comes out the same (text exactly, images pixel by pixel within a small tolerance).

Every other cell is committed without outputs, so no stored number claims to come from a mode that
did not produce it. Prints each notebook's smoke-mode time.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHECK = "# NBVAL_CHECK_OUTPUT"
KEEP = "# KEEP_OUTPUT"
MARKERS = (CHECK, KEEP)
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
ROOT = Path(__file__).resolve().parent.parent


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The numbered notebooks, in order (new ones join by their name)."""
    return sorted(folder.glob(NOTEBOOK_GLOB))


def kept(cell) -> bool:
    """Whether the committed notebook keeps this cell's outputs."""
    return cell.cell_type == "code" and cell.source.startswith(MARKERS)


def execute(path: Path, mode: str = "smoke", cwd: Path | None = None, timeout: int = 600):
    """Run a notebook top to bottom in a fresh kernel (in ``mode``); returns it with all outputs."""
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "BINTUT_MODE": mode}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or path.parent)}})
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits the environment of this process
    os.environ.pop("MPLBACKEND", None)  # e.g. Agg from tests/conftest.py: the kernel must draw inline figures
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def strip(nb) -> None:
    """Keep the outputs of marked cells only; number the kept cells 1, 2, ... (nbval needs counts). Drops the
    widget state the kernel left (tqdm's progress bars): no kept output shows a widget."""
    nb.metadata.pop("widgets", None)
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if kept(cell):
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if "execution_count" in out:
                    out.execution_count = count
        else:
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)


def _pixels(b64: str):
    import base64

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


def _joined_streams(outputs: list) -> list:
    """Outputs with consecutive stream chunks of one name joined: the kernel may flush a cell's printed text
    in one message or in several, depending on timing."""
    joined: list = []
    for output in outputs:
        if output.output_type == "stream" and joined and joined[-1].output_type == "stream" \
                and joined[-1].name == output.name:
            joined[-1] = nbformat.v4.new_output("stream", name=output.name, text=joined[-1].text + output.text)
        else:
            joined.append(output)
    return joined


def output_differences(committed, executed, tolerance: float = 0.002) -> list[str]:
    """Differences between a kept cell's committed and freshly executed outputs (empty: the same).

    Text and Markdown must match exactly; a PNG must have the same size and differ in at most
    ``tolerance`` of its pixels (anti-aliasing may move by a sub-pixel across CPUs).
    """
    problems = []
    a, b = _joined_streams(committed.outputs), _joined_streams(executed.outputs)
    if [o.output_type for o in a] != [o.output_type for o in b]:
        return [f"output types {[o.output_type for o in a]} != {[o.output_type for o in b]}"]
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.output_type == "stream":
            if x.text != y.text:
                problems.append(f"output {i}: stream text differs")
            continue
        if x.output_type == "error":
            problems.append(f"output {i}: an error")
            continue
        if set(x.data) != set(y.data):
            problems.append(f"output {i}: mime types {sorted(x.data)} != {sorted(y.data)}")
            continue
        for mime in x.data:
            if mime == "image/png":
                pa, pb = _pixels(x.data[mime]), _pixels(y.data[mime])
                if pa.shape != pb.shape:
                    problems.append(f"output {i}: image size {pa.shape[:2]} != {pb.shape[:2]}")
                elif (changed := float((abs(pa - pb).max(axis=2) > 8).mean())) > tolerance:
                    problems.append(f"output {i}: {100 * changed:.2f} % of the pixels differ")
            elif mime == "text/plain" and "image/png" in x.data:
                continue  # "<Figure size ...>": the image is what counts
            elif x.data[mime] != y.data[mime]:
                problems.append(f"output {i}: {mime} differs")
    return problems


def refresh(path: Path) -> float:
    started = time.perf_counter()
    nb = execute(path)
    seconds = time.perf_counter() - started
    strip(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or notebooks(Path("notebooks"))
    for path in paths:
        print(f"{path}: {refresh(path):.1f} s in smoke mode", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
