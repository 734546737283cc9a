"""The notebooks' "Implement it" exercises: a learner's function run on fixed cases against the library's.

A notebook cell holds a stub (``raise NotImplementedError``); the next cell calls
``bintut.check_function(my_fn, library_fn, cases("name"))``, which says "not implemented yet" for the stub (so
every notebook still runs top to bottom, in CI too), names the first failing case and how it fails (type, shape,
dtype, the first wrong value and its index, a gradient that does not flow), or that every case passes. It never
raises for the learner's errors: an exception in their code is reported in one line.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from bintut.integer.kernels import pack_signs
from bintut.quant import Int8Quantizer


def _is_stub(fn: Callable) -> bool:
    """Whether ``fn``'s body is only a docstring, ``...``, ``pass`` or ``raise NotImplementedError``."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    function = tree.body[0] if tree.body else None
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    for node in function.body:
        if isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue  # a docstring or a bare ...
        if isinstance(node, ast.Raise) and "NotImplementedError" in ast.unparse(node):
            continue
        return False
    return True


def _brief(value: Any) -> str:
    """A short description of an argument or a result: small arrays in full, larger ones by shape and dtype."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        array = value.detach().cpu().numpy() if kind == "tensor" else value
        if array.size <= 8:
            text = " ".join(np.array2string(array, separator=", ", floatmode="unique").split())
            return f"{kind}({text}, {_dtype(value)})"
        return f"a{'n' if kind == 'array' else ''} {kind} of shape {tuple(array.shape)}, {_dtype(value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return repr(value)


def _copy(value: Any) -> Any:
    """A fresh copy of an argument (so neither function sees what the other did to it); tensors keep
    ``requires_grad`` as fresh leaves."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    return value


def _call(fn: Callable, args: tuple) -> tuple[Any, list]:
    """fn(*args) on fresh copies; with the gradient of the output's sum for every input tensor that requires one
    (None where none reaches it; an empty list when no input requires a gradient)."""
    args = tuple(_copy(a) for a in args)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    out = fn(*args)
    if not leaves or not isinstance(out, torch.Tensor):
        return out, []
    if not out.requires_grad:
        return out, [None] * len(leaves)
    return out, list(torch.autograd.grad(out.sum(), leaves, allow_unused=True))


def _dtype(value: Any) -> str:
    return str(value.dtype).removeprefix("torch.")


def _number(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    if not isinstance(value, float):
        return repr(value)
    text = f"{value:.7g}"
    return text if any(c in text for c in ".ena") else f"{text}.0"


def _values(got: np.ndarray, expected: np.ndarray, tolerance: float) -> str | None:
    """How two arrays of the same shape differ (first wrong value, its index, how many), or None."""
    if np.issubdtype(expected.dtype, np.inexact):
        ok = np.isclose(got, expected, rtol=tolerance, atol=tolerance, equal_nan=True)
    else:
        ok = got == expected
    if ok.all():
        return None
    index = tuple(int(i) for i in np.argwhere(~ok)[0])
    where = index if len(index) != 1 else index[0]
    return (f"first wrong value at index {where}: {_number(got[index])}, expected {_number(expected[index])} "
            f"({int((~ok).sum())} of {ok.size} values wrong)")


def _difference(got: Any, expected: Any, tolerance: float) -> str | None:
    """How a result differs from the reference's (type, length, shape, dtype, values), or None when it matches."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"returned {_brief(got)}, expected a {type(expected).__name__} of {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            if (problem := _difference(g, e, tolerance)) is not None:
                return f"result [{i}]: {problem}"
        return None
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        kind = "torch.Tensor" if isinstance(expected, torch.Tensor) else "numpy array"
        if not isinstance(got, type(expected)):
            return f"returned {type(got).__name__}, expected a {kind}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if got.dtype != expected.dtype:
            return f"dtype {_dtype(got)}, expected {_dtype(expected)}"
        as_numpy = (lambda t: t.detach().cpu().numpy()) if kind == "torch.Tensor" else np.asarray
        return _values(as_numpy(got), as_numpy(expected), tolerance)
    if isinstance(expected, (bool, int, float, np.generic)):
        if isinstance(got, (torch.Tensor, np.ndarray)) or not isinstance(got, (bool, int, float, np.generic)):
            return f"returned {_brief(got)}, expected the number {expected!r}"
        return _values(np.asarray(got), np.asarray(expected), tolerance)
    return None if got == expected else f"returned {got!r}, expected {expected!r}"


def _verdict(got: Any, got_grads: list, expected: Any, grads: list, tolerance: float) -> str | None:
    """How a result and its gradients differ from the reference's, or None when they match."""
    if (problem := _difference(got, expected, tolerance)) is not None:
        return problem
    for j, (g, e) in enumerate(zip(got_grads, grads, strict=True)):
        if e is None:
            continue
        if g is None:
            return f"no gradient reaches argument {j + 1} (is the output detached from it?)"
        if (problem := _difference(g, e, tolerance)) is not None:
            return f"the gradient of the output's sum with respect to argument {j + 1}: {problem}"
    return None


def _raised(err: BaseException) -> str:
    """One line: the exception and the line of code it came from."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    frames = traceback.extract_tb(err.__traceback__)
    line = frames[-1].line if frames else ""
    return f"{type(err).__name__}: {message}" + (f" (at `{line}`)" if line else "")


def check_function(fn: Callable, reference: Callable, cases: Iterable[Any], tolerance: float = 1e-6) -> bool:
    """Run a learner's ``fn`` and the library's ``reference`` on each case and print the verdict in one line.

    ``cases``: argument tuples (a non-tuple is one argument); each function gets fresh copies. Results are compared
    by type, length (tuples, lists), shape, dtype and value: integers exactly, floats within ``tolerance``
    (absolute and relative). For torch inputs with ``requires_grad`` the gradients of the results' sums are compared
    too. Prints "not implemented yet" for a stub (a body of ``raise NotImplementedError``, ``...`` or ``pass``, or
    a result of ``...``), else the first failing case and how it fails, else that every case passes. Returns whether
    every case passed; never raises for an error in ``fn`` (it is printed in one line). Taught in
    notebooks/03_sprinkled_binarization.ipynb.
    """
    name = getattr(fn, "__name__", "your function")
    cases = [c if isinstance(c, tuple) else (c,) for c in cases]
    for i, args in enumerate(cases, start=1):
        label = f"{name}: case {i} of {len(cases)} ({', '.join(_brief(a) for a in args)})"
        try:
            got, got_grads = _call(fn, args)
        except NotImplementedError:
            print(f"{name}: not implemented yet - write it in the cell above, run that cell, then this one")
            return False
        except Exception as err:  # the learner's code: report, never raise
            print(f"{label}: raised {_raised(err)}")
            return False
        if got is Ellipsis or (got is None and _is_stub(fn)):
            print(f"{name}: not implemented yet - write it in the cell above, run that cell, then this one")
            return False
        expected, grads = _call(reference, args)
        try:
            problem = _verdict(got, got_grads, expected, grads, tolerance)
        except Exception as err:  # a result too odd to compare (e.g. an object whose == is not a bool)
            problem = f"returned {_brief(got)}, which cannot be compared with {_brief(expected)} ({_raised(err)})"
        if problem is not None:
            print(f"{label}: {problem}")
            return False
    print(f"{name}: all {len(cases)} cases pass")
    return True


def fake_quant_batches(batches: torch.Tensor, momentum: float = 0.1) -> torch.Tensor:
    """Each row of ``batches`` (B, N) float32 is one training batch, quantized in turn by one
    :class:`~bintut.quant.Int8Quantizer` in training mode at p = bin_ratio = 1: the running max is updated with the
    batch first, then the batch is rounded to the int8 grid of that updated max (what ``Int8Quantizer.hard``
    does). Returns the fake-quantized rows, (B, N) float32. Taught in notebooks/04_int8_activations.ipynb."""
    quantizer = Int8Quantizer(momentum)
    quantizer.set_controls(1.0, 1.0)
    with torch.no_grad():
        return torch.stack([quantizer(row) for row in batches])


def _sign_ste_cases() -> list:
    generator = torch.Generator().manual_seed(3)
    return [torch.tensor([-0.3, 0.0, 2.0], requires_grad=True),
            (torch.randn(4, 6, generator=generator) * 2).requires_grad_(True),
            torch.tensor([[0.0, -0.0], [1e-8, -1e-8]], requires_grad=True)]


def _fake_quant_cases() -> list:
    generator = torch.Generator().manual_seed(4)
    grows = torch.randn(6, 10, generator=generator) * torch.linspace(1.0, 3.0, 6)[:, None]
    spike = torch.tensor([[0.5, -1.0, 0.25, 2.0], [1.0, -0.5, 8.0, 0.0], [0.1, 0.2, -0.3, 0.4]])
    return [(torch.tensor([[-1.0, -0.5, 0.0, 0.26, 1.27]]), 0.1), (grows, 0.1), (spike, 0.5), (spike, 1.0)]


def _addsub_cases() -> list:
    rng = np.random.default_rng(5)
    out = []
    for m, n, k in ((1, 1, 9), (3, 4, 13), (8, 16, 576)):
        x = rng.integers(-127, 128, (m, k)).astype(np.int8)
        w = np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)
        out.append((x, pack_signs(w), k))
    k = 4608  # ResNet18's widest reduction, every code at 127: an int16 (or int8) sum overflows
    out.append((np.full((1, k), 127, dtype=np.int8), pack_signs(np.ones((2, k))), k))
    return out


def _multiplier_cases() -> list:
    return [np.array([0.75, 0.1]), np.array([0.0123]), np.array([-0.5, 3e-3, 1.7e-6, 123.4]),
            np.array([1 - 2.0**-40])]  # rounds up to 2^31: one more bit of shift


def _xnor_cases() -> list:
    rng = np.random.default_rng(6)
    out = []
    for m, n, k in ((1, 1, 5), (2, 3, 64), (4, 5, 70), (3, 8, 4608)):
        a, w = (np.where(rng.random((rows, k)) < 0.5, -1, 1) for rows in (m, n))
        out.append((pack_signs(a), pack_signs(w), k))
    return out


_CASES = {"sign_ste": _sign_ste_cases, "fake_quant_batches": _fake_quant_cases, "addsub_gemm": _addsub_cases,
          "quantize_multiplier": _multiplier_cases, "xnor_gemm": _xnor_cases}


def cases(name: str) -> list:
    """Fresh fixed cases (argument tuples, or single arguments) for the exercise ``name``: 'sign_ste',
    'fake_quant_batches', 'addsub_gemm', 'quantize_multiplier' or 'xnor_gemm'. Raises KeyError for another name."""
    if name not in _CASES:
        raise KeyError(f"no exercise {name!r}; known: {', '.join(_CASES)}")
    return _CASES[name]()
