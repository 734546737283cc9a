"""The "Implement it" exercises: check_function's verdicts, and the notebooks' answers filled into their stubs."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import bintut
from bintut.integer.fixedpoint import quantize_multiplier
from bintut.integer.kernels import addsub_gemm
from bintut.quant import sign_ste
from bintut.teaching.exercises import cases, fake_quant_batches

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STUB = "# Implement it"
WITH_EXERCISES = ("03_", "04_", "05_", "07_", "09_")


def _verdict(capsys, fn, reference, fixed) -> tuple[bool, str]:
    ok = bintut.check_function(fn, reference, fixed)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, f"one line, got {out!r}"
    return ok, out


def test_a_stub_is_not_implemented_yet(capsys):
    def raises(x):
        """A stub."""
        raise NotImplementedError

    def dots(x):
        ...

    for stub in (raises, dots, lambda x: ...):
        ok, out = _verdict(capsys, stub, sign_ste, cases("sign_ste"))
        assert ok is False and "not implemented yet" in out


def test_a_forgotten_return_is_not_called_a_stub(capsys):
    def forgot(x):
        torch.where(x >= 0, 1.0, -1.0)

    ok, out = _verdict(capsys, forgot, sign_ste, cases("sign_ste"))
    assert ok is False and "not implemented" not in out and "case 1 of 3" in out and "returned None" in out


def test_the_first_wrong_value_its_index_and_the_case(capsys):
    ok, out = _verdict(capsys, torch.sign, sign_ste, cases("sign_ste"))  # sign(0) = 0, not +1
    assert ok is False
    assert "sign: case 1 of 3 (tensor([-0.3, 0. , 2. ], float32))" in out
    assert "first wrong value at index 1: 0.0, expected 1.0 (1 of 3 values wrong)" in out


def test_a_missing_gradient_is_named(capsys):
    ok, out = _verdict(capsys, lambda x: torch.where(x >= 0, 1.0, -1.0), sign_ste, cases("sign_ste"))
    assert ok is False and "no gradient reaches argument 1" in out


def test_a_wrong_gradient_is_named(capsys):
    def clipped(x):  # the values are right, the gradient is 0 outside [-1, 1]
        hard = torch.where(x >= 0, 1.0, -1.0)
        return x.clamp(-1, 1) + (hard - x.clamp(-1, 1)).detach()

    ok, out = _verdict(capsys, clipped, sign_ste, cases("sign_ste"))
    assert ok is False and "case 1 of 3" in out
    assert "the gradient of the output's sum with respect to argument 1: first wrong value at index 2: 0.0" in out


def test_shape_dtype_and_type(capsys):
    ok, out = _verdict(capsys, lambda x, bits, k: addsub_gemm(x, bits, k).T, addsub_gemm, cases("addsub_gemm"))
    assert ok is False and "case 2 of 4" in out and "shape (4, 3), expected (3, 4)" in out
    ok, out = _verdict(capsys, lambda x, bits, k: addsub_gemm(x, bits, k).astype(np.int64), addsub_gemm,
                       cases("addsub_gemm"))
    assert ok is False and "dtype int64, expected int32" in out
    ok, out = _verdict(capsys, lambda x, bits, k: torch.from_numpy(addsub_gemm(x, bits, k)), addsub_gemm,
                       cases("addsub_gemm"))
    assert ok is False and "returned Tensor, expected a numpy array" in out
    ok, out = _verdict(capsys, lambda real: quantize_multiplier(real)[:2], quantize_multiplier,
                       cases("quantize_multiplier"))
    assert ok is False and "expected a tuple of 3" in out


def test_an_overflow_shows_in_the_saturated_case(capsys):
    def int16_sums(x, bits, k):
        m = np.unpackbits(bits, axis=1, count=k).astype(np.int16)
        x = x.astype(np.int16)
        return (2 * (x @ m.T) - x.sum(axis=1, keepdims=True, dtype=np.int16)).astype(np.int32)

    ok, out = _verdict(capsys, int16_sums, addsub_gemm, cases("addsub_gemm"))
    assert ok is False and "case 4 of 4" in out and "first wrong value at index (0, 0)" in out


def test_the_learners_exception_is_one_line_and_never_raised(capsys):
    def broken(x, bits, k):
        return x @ bits

    ok, out = _verdict(capsys, broken, addsub_gemm, cases("addsub_gemm"))
    assert ok is False and "raised ValueError: matmul" in out and "(at `return x @ bits`)" in out


def test_the_learners_function_cannot_change_the_cases(capsys):
    def in_place(x):
        out = sign_ste(x)
        x.data.zero_()
        return out

    ok, out = _verdict(capsys, in_place, sign_ste, cases("sign_ste"))
    assert ok is True and out == "in_place: all 3 cases pass\n"


def test_the_library_passes_its_own_checks(capsys):
    for fn, name in ((sign_ste, "sign_ste"), (fake_quant_batches, "fake_quant_batches"),
                     (addsub_gemm, "addsub_gemm"), (quantize_multiplier, "quantize_multiplier")):
        ok, out = _verdict(capsys, fn, fn, cases(name))
        assert ok is True and "cases pass" in out


def test_the_running_max_is_updated_before_the_batch_is_quantized(capsys):
    """fake_quant_batches is Int8Quantizer.hard in training: with momentum 1 no batch is ever clipped."""
    batches = torch.tensor([[1.0, -0.5], [4.0, 2.0], [0.5, 0.25]])
    out = fake_quant_batches(batches, momentum=1.0)
    assert torch.allclose(out, batches, atol=4.0 / 254)
    assert out[1, 0] == 4.0  # the second batch's max is on the grid of its own max

    def before(b, momentum):
        out, m = [], None
        for row in b:
            step = (row.abs().max() if m is None else m) / 127
            out.append(torch.clamp(torch.round(row / step), -127, 127) * step)
            m = row.abs().max() if m is None else torch.lerp(m, row.abs().max(), momentum)
        return torch.stack(out)

    ok, out = _verdict(capsys, before, fake_quant_batches, cases("fake_quant_batches"))
    assert ok is False and "case 2 of 4" in out


def test_unknown_exercise():
    with pytest.raises(KeyError, match="no exercise 'nope'"):
        cases("nope")


# --- The notebooks' exercises, filled with their answers ------------------------------------------------------------


def _exercises(path: Path) -> list[tuple[str, str, str]]:
    """(function name, stub cell, check cell) for each "Implement it" stub of a notebook."""
    cells = nbformat.read(path, as_version=4).cells
    found = []
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and cell.source.startswith(STUB):
            name = re.search(r"^def (\w+)\(", cell.source, re.M).group(1)
            found.append((name, cell.source, cells[i + 1].source))
    return found


def _answers(path: Path) -> dict[str, str]:
    """Function name -> the solution's code, from the notebook's "## Answers" cell."""
    cells = nbformat.read(path, as_version=4).cells
    answers = next(c.source for c in cells if c.cell_type == "markdown" and c.source.startswith("## Answers"))
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", answers, re.S)]
    return {m.group(1): b for b in blocks if (m := re.search(r"^def (\w+)\(", b, re.M))}


def _run(code: str, check: str) -> tuple[object, dict]:
    namespace: dict = {}
    exec("import numpy as np\nimport torch\n\nimport bintut\n", namespace)  # what every notebook imports
    exec(code, namespace)
    exec(check, namespace)
    return namespace.get("ok"), namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_answers_pass_the_checks_and_the_stubs_do_not(path, capsys):
    exercises = _exercises(path)
    if path.name.startswith(WITH_EXERCISES):
        assert exercises, f"{path.name}: no '{STUB}' exercise"
    answers = _answers(path) if exercises else {}
    for name, stub, check in exercises:
        assert "raise NotImplementedError" in stub, f"{name}: the stub ships empty"
        assert re.search(rf"^ok = bintut\.check_function\({name}, ", check, re.M), f"{name}: no check cell after it"
        ok, _ = _run(stub, check)
        assert ok is False and "not implemented yet" in capsys.readouterr().out
        assert name in answers, f"{path.name}: no solution of {name} in the Answers cell"
        ok, _ = _run(answers[name], check)
        out = capsys.readouterr().out
        assert ok is True, f"{path.name}: the answer of {name} fails its check: {out}"


def test_a_result_that_cannot_be_compared_is_reported(capsys):
    def odd(real):
        return "m0", "n", "sign"

    ok, out = _verdict(capsys, odd, quantize_multiplier, cases("quantize_multiplier"))
    assert ok is False and "result [0]: returned str, expected a numpy array" in out

    class Weird:
        def __eq__(self, other):
            raise RuntimeError("no")

    ok, out = _verdict(capsys, lambda x: Weird(), lambda x: Weird(), [1])
    assert ok is False and "cannot be compared" in out and "RuntimeError: no" in out
