"""int8 activations x ±1 weights in numpy: three GEMMs that must agree bit for bit.

With w in {-1, +1} and m = (w + 1) / 2 in {0, 1}: ``acc = sum x*w = 2 * sum_{m=1} x - sum x``.
No multiplication is needed, only additions and subtractions of int8 values into an int32
accumulator (|acc| <= 127 * K; K = 4608 in ResNet18's widest 3x3 conv, so int16 overflows).

* :func:`addsub_gemm` -- the teaching kernel: adds the selected columns, from packed sign bits;
* :func:`blas_gemm`   -- the fast path: float32 BLAS, exact while |acc| < 2^24 (asserted);
* :func:`oracle_gemm` -- int64 reference (numpy integer matmul has no BLAS path: slow, exact).
"""

from __future__ import annotations

import numpy as np

from bintut.config import INT8_MAX
from bintut.errors import BintutError

FLOAT32_EXACT = 2**24  # every integer of magnitude below this is a float32


class AccumulatorRangeError(ValueError, BintutError):
    """The fast path cannot be exact for this reduction length."""


def pack_signs(w: np.ndarray) -> np.ndarray:
    """(N, K) real weights -> (N, ceil(K/8)) uint8 bits, bit = 1 where w >= 0 (sign(0) = +1), MSB first.
    Taught in notebooks/05_int8_addsub_gemm.ipynb.

    >>> pack_signs(np.array([[0.5, -1.0, 0.0]])).tolist()  # bits 1, 0, 1 then zero padding: 0b10100000
    [[160]]
    """
    return np.packbits(np.asarray(w) >= 0, axis=1)


def unpack_signs(bits: np.ndarray, k: int) -> np.ndarray:
    """(N, ceil(K/8)) packed bits -> (N, K) int8 weights in {-1, +1}."""
    m = np.unpackbits(bits, axis=1, count=k).astype(np.int8)
    return 2 * m - 1


def check_exact_range(k: int) -> None:
    """Refuse a reduction whose worst-case |acc| = 127 K could leave float32's exact integers.

    Raises AccumulatorRangeError, quoting K and the bound 2^24, and pointing to oracle_gemm."""
    if INT8_MAX * k >= FLOAT32_EXACT:
        raise AccumulatorRangeError(
            f"reduction length K={k} allows |acc| up to {INT8_MAX * k}, beyond float32's exact range "
            f"(2^24 = {FLOAT32_EXACT}); use oracle_gemm"
        )


def _check_codes(x: np.ndarray) -> None:
    if x.dtype != np.int8:
        raise TypeError(f"activations must be int8 codes, got {x.dtype}")


def addsub_gemm(x: np.ndarray, bits: np.ndarray, k: int) -> np.ndarray:
    """Teaching kernel: acc[:, n] = 2 * (sum of x's columns where w_n = +1) - sum of all x's columns.

    x: (M, K) int8, bits: (N, ceil(K/8)) packed signs; returns (M, N) int32. Only additions and one
    doubling. Raises AccumulatorRangeError for codes outside [-127, 127].
    Taught in notebooks/05_int8_addsub_gemm.ipynb.

    >>> w = np.array([[0.5, -1.0, 0.0], [-2.0, 3.0, -0.1]])
    >>> x = np.array([[1, 2, 3], [-4, 5, 6]], dtype=np.int8)
    >>> addsub_gemm(x, pack_signs(w), 3).tolist()  # = x @ sign(w).T
    [[2, -2], [-3, 3]]
    """
    _check_codes(x)
    plus = np.unpackbits(bits, axis=1, count=k).astype(bool)
    total = x.sum(axis=1, dtype=np.int32)  # shared by every output channel
    acc = np.empty((x.shape[0], plus.shape[0]), dtype=np.int32)
    for n, columns in enumerate(plus):
        selected = x[:, columns].sum(axis=1, dtype=np.int32)
        acc[:, n] = selected + selected - total
    return acc


def blas_gemm(x: np.ndarray, w: np.ndarray, out_dtype: type = np.int32) -> np.ndarray:
    """Fast path: x (M, K) int8 codes (or the same codes in float32), w (N, K) ±1.

    Every partial sum is an integer below 2^24 in magnitude, so float32 BLAS computes it exactly;
    ``out_dtype=np.float32`` skips the final conversion for callers that scale it anyway.
    """
    k = x.shape[1]
    check_exact_range(k)
    xf = x if x.dtype == np.float32 else x.astype(np.float32)
    acc = xf @ np.asarray(w, dtype=np.float32).T
    return acc.astype(out_dtype, copy=False)


def oracle_gemm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int64 reference: x (M, K) int8, w (N, K) ±1."""
    _check_codes(x)
    return x.astype(np.int64) @ np.asarray(w, dtype=np.int64).T


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """NHWC (N, H, W, C) -> (N * OH * OW, kernel * kernel * C) patches in tap-major (kh, kw, C) order.

    Each of the kernel^2 taps is one strided slice copy of C-contiguous rows, several times faster
    than a generic sliding-window reshape. Weights must be flattened in the same order: see
    :func:`conv_weight_matrix`. Zero padding is exact for int8 codes: a padded tap adds 0.
    """
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    n, h, w, c = x.shape
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    if kernel == 1:
        return np.ascontiguousarray(x[:, ::stride, ::stride, :]).reshape(-1, c)
    out = np.empty((n, oh, ow, kernel, kernel, c), dtype=x.dtype)
    for dy in range(kernel):
        for dx in range(kernel):
            rows = slice(dy, dy + stride * (oh - 1) + 1, stride)
            cols = slice(dx, dx + stride * (ow - 1) + 1, stride)
            out[:, :, :, dy, dx, :] = x[:, rows, cols]
    return out.reshape(n * oh * ow, kernel * kernel * c)


def conv_weight_matrix(w: np.ndarray) -> np.ndarray:
    """torch conv weights (O, C, kh, kw) -> (O, kh * kw * C), the column order of :func:`im2col`."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1
